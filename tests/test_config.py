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
