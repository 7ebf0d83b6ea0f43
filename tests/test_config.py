"""Recipe files: defaults, deviations, type-checked --set overrides, helpful errors."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from llmcse.config import load_recipe, resolved
from llmcse.errors import LlmcseError


@dataclass
class TrainSection:
    epochs: int = 1
    lr: float = 2e-5
    temperature: float = 0.05
    fp16: bool = False
    base: str = "all-MiniLM-L6-v2"
    max_steps: int | None = None


SECTIONS = {"train": TrainSection}


def test_recipe_lists_only_deviations_and_set_overrides_are_typed(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[train]\n# a longer run: the small set overfits otherwise\nepochs = 3\n", encoding="utf-8")
    cfg = load_recipe(recipe, SECTIONS, ["train.lr=1e-4", "train.fp16=true", "train.max_steps=100"])
    assert cfg["train"] == TrainSection(epochs=3, lr=1e-4, temperature=0.05, fp16=True, max_steps=100)
    cfg = load_recipe(recipe, SECTIONS, ["train.max_steps=none"])
    assert cfg["train"].max_steps is None


def test_unknown_keys_and_sections_are_errors_with_suggestions(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text("[train]\nepoch = 3\n", encoding="utf-8")
    with pytest.raises(LlmcseError, match=r"unknown key train.epoch. Did you mean 'epochs'\?"):
        load_recipe(recipe, SECTIONS)
    recipe.write_text("[trian]\n", encoding="utf-8")
    with pytest.raises(LlmcseError, match=r"unknown section \[trian\]. Did you mean 'train'\?"):
        load_recipe(recipe, SECTIONS)


def test_bad_override_values_name_the_key_and_the_expected_type():
    with pytest.raises(LlmcseError, match=r"train.epochs: expected int, got 'three'"):
        load_recipe(None, SECTIONS, ["train.epochs=three"])
    with pytest.raises(LlmcseError, match=r"train.fp16: expected true or false"):
        load_recipe(None, SECTIONS, ["train.fp16=maybe"])
    with pytest.raises(LlmcseError, match="--set expects section.key=value"):
        load_recipe(None, SECTIONS, ["epochs=3"])


def test_resolved_config_hash_changes_only_with_values():
    a = resolved(load_recipe(None, SECTIONS))
    b = resolved(load_recipe(None, SECTIONS, ["train.epochs=1"]))
    c = resolved(load_recipe(None, SECTIONS, ["train.epochs=2"]))
    assert a["config_hash"] == b["config_hash"] != c["config_hash"]
    assert a["config"]["train"]["temperature"] == 0.05


@dataclass
class GenerateSection:
    llm: str = "hf:model"
    batch_size: int = 32
    out: str = "generated.jsonl"


def test_a_sub_table_sets_fields_of_its_section_and_wired_keys_are_refused(tmp_path):
    tables = {"llm": {"spec": "llm", "batch_size": "batch_size"}}
    sections = {"generate": GenerateSection, "train": TrainSection}
    recipe = tmp_path / "r.toml"
    recipe.write_text('[generate.llm]\nspec = "fake:"\nbatch_size = 8\n', encoding="utf-8")
    cfg = load_recipe(recipe, sections, tables=tables)
    assert cfg["generate"] == GenerateSection(llm="fake:", batch_size=8)
    cfg = load_recipe(recipe, sections, ["generate.llm.batch_size=4", "generate.llm=fake:x"], tables=tables)
    assert (cfg["generate"].llm, cfg["generate"].batch_size) == ("fake:x", 4)
    recipe.write_text('[generate.llm]\nbatchsize = 8\n', encoding="utf-8")
    with pytest.raises(LlmcseError, match=r"r.toml: unknown key generate.llm.batchsize. Did you mean 'batch_size'\?"):
        load_recipe(recipe, sections, tables=tables)
    recipe.write_text('[generate]\nout = "mine.jsonl"\n', encoding="utf-8")
    with pytest.raises(LlmcseError, match=r"r.toml: generate.out is set by the run"):
        load_recipe(recipe, sections, tables=tables, wired={"generate": {"out": ""}})
    recipe.write_text('[train]\nllm = 3\n', encoding="utf-8")  # a section without an llm field has no [x.llm] table
    with pytest.raises(LlmcseError, match=r"unknown key train.llm"):
        load_recipe(recipe, sections, tables=tables)
