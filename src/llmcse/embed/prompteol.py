"""PromptEOL: a decoder LLM's last-token state under an "in one word" prompt as the sentence embedding.

Jiang et al., "Scaling Sentence Embeddings with Large Language Models", Findings of ACL 2024
(arXiv:2307.16645, code: github.com/kongds/scaling_sentemb). The embedding of a sentence is
the last layer's hidden state at the final token of ``This sentence : "[text]" means in one
word:"``; the prompt makes the next-token distribution (and so that state) summarise the
sentence in one word. Optional in-context demos (``icl``) put k filled-in examples in front.

How the result stays a plain sentence-transformers folder
---------------------------------------------------------
Sentence-transformers prompts are prefixes only, and this template has text *after* the
sentence. sentence-transformers 6.x gives a stock way to wrap inputs on both sides: a
Transformer module whose ``modality_config`` has a ``"message"`` entry converts every plain
string input into a one-message conversation (``[{"role": "user", "content": text}]``) and
renders it with the tokenizer's chat template (``Transformer.preprocess``: "Always convert to
the message format if it's supported"). So the folder saved here is

- ``Transformer`` (``feature-extraction``, AutoModel) with ``modality_config = {text, message
  (format "flat")}`` in ``sentence_bert_config.json``;
- a Jinja chat template (``chat_template.jinja``, saved with the tokenizer) that ignores the
  chat format and renders ``[demos]prefix + cleaned text + suffix``. The text cleanup runs
  inside the template, so a raw sentence given to a plainly loaded model is cleaned too;
- ``processing_kwargs = {"chat_template": {"restore_suffix": true}}``: when a rendered prompt
  is longer than ``max_seq_length``, the tokenizer cuts its end and sentence-transformers
  writes the template's fixed tail tokens back over the last positions, so the sentence is
  what gets truncated and the final token is always the template's ``:"``;
- ``padding_side: "left"`` and ``truncation_side: "right"`` in ``tokenizer_config.json``;
- ``Pooling(pooling_mode="lasttoken")`` (it reads the last attended position from the mask,
  so it is right under either padding side) and ``Normalize``.

``SentenceTransformer(folder)`` loads it with no llmcse import and no ``trust_remote_code``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from llmcse.errors import LlmcseError
from llmcse.utils.registry import Registry

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

CITATION = """@inproceedings{jiang-etal-2024-scaling,
    title = "Scaling Sentence Embeddings with Large Language Models",
    author = "Jiang, Ting and Huang, Shaohan and Luan, Zhongzhi and Wang, Deqing and Zhuang, Fuzhen",
    booktitle = "Findings of the Association for Computational Linguistics: EMNLP 2024",
    year = "2024",
    url = "https://arxiv.org/abs/2307.16645",
}"""


# ---------------------------------------------------------------------------------------------
# Templates
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt around the sentence: ``prefix + sentence + suffix``; the suffix's last token is read.

    Args:
        name: Registry name (lower_snake).
        prefix: Text before the sentence.
        suffix: Text after the sentence; ends where the model would write its one word.
        source: Where the wording comes from.
    """

    name: str
    prefix: str
    suffix: str
    source: str

    def fill(self, sentence: str) -> str:
        return f"{self.prefix}{sentence}{self.suffix}"

    def demo(self, sentence: str, word: str) -> str:
        """One in-context example: the filled prompt, the answer word, then ``".`` as in the paper."""
        return f'{self.fill(sentence)}{word}".'


TEMPLATES: Registry[PromptTemplate] = Registry("PromptEOL template")


def register_template(template: PromptTemplate, *, aliases: tuple[str, ...] = ()) -> PromptTemplate:
    if template.name != template.name.lower() or "-" in template.name or " " in template.name:
        raise ValueError(f"template names are lower_snake, got {template.name!r}")
    return TEMPLATES.register(template.name, template, aliases=aliases)


register_template(PromptTemplate(
    "prompteol", 'This sentence : "', '" means in one word:"',
    "Jiang et al. 2024, the PromptEOL template (scaling_sentemb: 'This_sentence_:_\"*sent_0*\"_means_in_one_word:\"')",
))
register_template(PromptTemplate(
    "one_word", 'This sentence : "', '" in one word:"',
    "variant of PromptEOL without 'means'",
), aliases=("one-word",))
register_template(PromptTemplate(
    "summarize", 'This sentence : "', '" can be summarized as one word:"',
    "variant of PromptEOL asking for a one-word summary",
), aliases=("summarise", "summary"))
register_template(PromptTemplate(
    "pretended_cot", 'After thinking step by step , this sentence : "', '" means in one word:"',
    "Zhang et al. 2024, Simple Techniques for Enhancing Sentence Embeddings in Generative Language Models "
    "(Pretended Chain of Thought)",
), aliases=("pretended-cot",))
register_template(PromptTemplate(
    "knowledge",
    "The essence of a sentence is often captured by its main subjects and actions, while descriptive terms "
    'provide additional but less central details. With this in mind , this sentence : "',
    '" means in one word:"',
    "Zhang et al. 2024, Simple Techniques for Enhancing Sentence Embeddings in Generative Language Models "
    "(Knowledge Enhancement)",
))


def get_template(name: str) -> PromptTemplate:
    """The registered template ``name`` (hyphens or underscores); UnknownNameError lists the valid ones."""
    return TEMPLATES.get(name)


# ---------------------------------------------------------------------------------------------
# In-context demos
# ---------------------------------------------------------------------------------------------


class Demo(NamedTuple):
    """An in-context example: a sentence and the one word that sums it up."""

    sentence: str
    word: str


# The first is the demo of the paper's README; the others are from the same repository's list of
# ICL candidates (icl_examples.txt, which the authors searched on STS-B dev). All are STS-B *train*
# captions, none occurs in STS-B test; some also occur in STS12-16 and SICK-R, as in the paper.
DEMOS: tuple[Demo, ...] = (
    Demo("A jockey riding a horse.", "Equestrian"),
    Demo("A man is playing a large flute.", "Music"),
    Demo("Three men are playing chess.", "Strategy"),
    Demo("The boy fell off his bike.", "Accident"),
    Demo("A girl is flying a kite.", "Recreation"),
    Demo("Some men are fighting.", "Conflict"),
    Demo("A woman is writing.", "Writing"),
    Demo("A man pours oil into a pot.", "Cooking"),
)


# ---------------------------------------------------------------------------------------------
# Text cleanup
# ---------------------------------------------------------------------------------------------

# Typographic quotes -> ASCII.
CURLY_QUOTES: dict[str, str] = {
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
}
# A sentence ending in one of these gets no extra period (the paper's code: s[-1] not in '.?"\'').
FINAL_PUNCTUATION = ".?\"'"


@dataclass(frozen=True)
class Cleanup:
    """Text cleanup before the sentence goes into the template, applied in this order.

    The paper's evaluation code (scaling_sentemb ``evaluation.py`` batcher) does the last three:
    ``if s[-1] not in '.?"\\'': s += '.'``; ``s = s.replace('"', "'")``; a final ``?`` becomes ``.``.

    Args:
        strip: Remove leading and trailing whitespace (``str.strip``).
        straight_quotes: Typographic quotes to ASCII (``“ ” „`` -> ``"``, ``‘ ’ ‚`` -> ``'``).
        final_period: Append ``.`` unless the text ends in one of ``. ? " '`` (or is empty).
        single_quotes: ``"`` -> ``'`` inside the sentence, since the template quotes it with ``"``.
        question_to_period: A final ``?`` becomes ``.``.
    """

    strip: bool = True
    straight_quotes: bool = True
    final_period: bool = True
    single_quotes: bool = True
    question_to_period: bool = True


NO_CLEANUP = Cleanup(False, False, False, False, False)


def clean_sentence(text: str, cleanup: Cleanup = Cleanup()) -> str:
    """Apply ``cleanup`` to one sentence (the Python twin of the saved Jinja template)."""
    if cleanup.strip:
        text = text.strip()
    if cleanup.straight_quotes:
        for curly, straight in CURLY_QUOTES.items():
            text = text.replace(curly, straight)
    if cleanup.final_period and text and text[-1] not in FINAL_PUNCTUATION:
        text += "."
    if cleanup.single_quotes:
        text = text.replace('"', "'")
    if cleanup.question_to_period and text and text[-1] == "?":
        text = text[:-1] + "."
    return text


# ---------------------------------------------------------------------------------------------
# Prompt rendering: the Python reference and the Jinja template saved with the model
# ---------------------------------------------------------------------------------------------


def select_demos(icl: int, demos: Sequence[Demo | tuple[str, str]] | None = None) -> list[Demo]:
    """The first ``icl`` demos of ``demos`` (default: the shipped DEMOS)."""
    pool = [Demo(*d) for d in (DEMOS if demos is None else demos)]
    if not 0 <= icl <= len(pool):
        raise LlmcseError(f"--icl must be between 0 and {len(pool)} (the number of demos), got {icl}")
    return pool[:icl]


def demo_block(template: PromptTemplate, demos: Sequence[Demo], cleanup: Cleanup = Cleanup()) -> str:
    """The in-context examples, concatenated with no separator as in the paper (``...:"Equestrian".This sentence``)."""
    return "".join(template.demo(clean_sentence(d.sentence, cleanup), d.word) for d in demos)


def render_prompt(
    text: str,
    template: str | PromptTemplate = "prompteol",
    icl: int = 0,
    cleanup: Cleanup = Cleanup(),
    demos: Sequence[Demo | tuple[str, str]] | None = None,
    bos_token: str = "",
) -> str:
    """The exact string the saved model tokenizes for ``text`` (reference implementation)."""
    tpl = get_template(template) if isinstance(template, str) else template
    return bos_token + demo_block(tpl, select_demos(icl, demos), cleanup) + tpl.fill(clean_sentence(text, cleanup))


def _jinja_str(value: str) -> str:
    """A Jinja string literal (JSON escapes are valid Jinja escapes)."""
    return json.dumps(value)


def chat_template_source(
    template: str | PromptTemplate = "prompteol",
    icl: int = 0,
    cleanup: Cleanup = Cleanup(),
    demos: Sequence[Demo | tuple[str, str]] | None = None,
    add_bos: bool = False,
) -> str:
    """A Jinja chat template that renders a one-message conversation as the PromptEOL prompt.

    Everything that shapes the prompt (template, demos, cleanup) is baked in, so the saved
    model needs nothing but sentence-transformers to reproduce it. A system message (what
    sentence-transformers makes of ``prompt=``/``prompt_name=``) or more than one message is
    an error rather than silently dropped.

    Args:
        add_bos: Start with ``{{ bos_token }}``: for tokenizers that add BOS in plain
            tokenization (Llama, Mistral), since chat templates are tokenized without special tokens.
    """
    tpl = get_template(template) if isinstance(template, str) else template
    steps = []
    if cleanup.strip:
        steps.append("{%- set t = t | trim -%}")
    if cleanup.straight_quotes:
        chain = "".join(f".replace({_jinja_str(a)}, {_jinja_str(b)})" for a, b in CURLY_QUOTES.items())
        steps.append(f"{{%- set t = t{chain} -%}}")
    if cleanup.final_period:
        ends = _jinja_str(FINAL_PUNCTUATION)
        steps.append(f'{{%- if t and t[-1] not in {ends} -%}}{{%- set t = t ~ "." -%}}{{%- endif -%}}')
    if cleanup.single_quotes:
        steps.append("{%- set t = t.replace('\"', \"'\") -%}")
    if cleanup.question_to_period:
        steps.append('{%- if t and t[-1] == "?" -%}{%- set t = t[:-1] ~ "." -%}{%- endif -%}')
    demo_text = demo_block(tpl, select_demos(icl, demos), cleanup)
    lines = [
        f"{{#- PromptEOL (Jiang et al. 2024), template {tpl.name!r}, {icl} in-context demo(s); written by llmcse -#}}",
        "{%- if messages | length != 1 or messages[0].role == 'system' -%}",
        "{{- raise_exception('This PromptEOL model embeds one plain text at a time; "
        "it takes no prompt, system message or text pair.') -}}",
        "{%- endif -%}",
        "{%- set content = messages[0].content -%}",
        "{%- if content is string -%}{%- set t = content -%}",
        "{%- else -%}",
        "{%- set t = content | selectattr('type', 'equalto', 'text') | map(attribute='text') | join(' ') -%}",
        "{%- endif -%}",
        *steps,
        ("{{- bos_token -}}" if add_bos else ""),
        (f"{{{{- {_jinja_str(demo_text)} -}}}}" if demo_text else ""),
        f"{{{{- {_jinja_str(tpl.prefix)} -}}}}{{{{- t -}}}}{{{{- {_jinja_str(tpl.suffix)} -}}}}",
    ]
    return "\n".join(line for line in lines if line) + "\n"


def tokenizer_adds_bos(tokenizer) -> bool:
    """Whether plain ``tokenizer(text)`` puts BOS first (the paper's code relied on that for LLaMA)."""
    with_special = tokenizer("a").input_ids
    without = tokenizer("a", add_special_tokens=False).input_ids
    bos = tokenizer.bos_token_id
    return bos is not None and len(with_special) > len(without) and with_special[0] == bos


# ---------------------------------------------------------------------------------------------
# Building and saving
# ---------------------------------------------------------------------------------------------


@dataclass
class PromptEOLConfig:
    """Everything that decides a saved PromptEOL model (written to ``prompteol.json``)."""

    base: str
    template: str = "prompteol"
    icl: int = 0
    cleanup: Cleanup = Cleanup()
    normalize: bool = True
    max_seq_length: int | None = None
    dtype: str | None = None  # weights are saved in this dtype; None = float32


def build_prompteol_model(
    base: str,
    template: str = "prompteol",
    icl: int = 0,
    *,
    strip: bool = True,
    straight_quotes: bool = True,
    final_period: bool = True,
    single_quotes: bool = True,
    question_to_period: bool = True,
    demos: Sequence[Demo | tuple[str, str]] | None = None,
    normalize: bool = True,
    max_seq_length: int | None = None,
    dtype: str | None = None,
    device: str | None = "cpu",
    quantization: str | None = None,
) -> SentenceTransformer:
    """A PromptEOL SentenceTransformer (Transformer + Pooling(lasttoken) [+ Normalize]) from a decoder LLM.

    Args:
        base: A causal LM: local folder, hub id, bundled name (``SmolLM2-135M-Instruct``) or ``.gguf``.
        template: A registered template (``prompteol``, ``one_word``, ``summarize``, ``pretended_cot``,
            ``knowledge``).
        icl: Number of in-context demos put in front (0 = plain PromptEOL).
        strip, straight_quotes, final_period, single_quotes, question_to_period: The cleanup steps
            (see ``Cleanup``); all on by default, as in the paper's code.
        demos: (sentence, word) pairs to draw the ``icl`` demos from (default: ``DEMOS``).
        normalize: Add a Normalize module (unit-length output).
        max_seq_length: Token budget of the whole prompt; the sentence is what gets truncated.
        dtype: ``float32`` (default), ``bfloat16``, ``float16`` or ``auto``.
        device: Where to load the model (default cpu; None = auto).

    Returns:
        The model; ``model.encode(["a sentence"])`` gives PromptEOL embeddings, shape (batch, hidden).

    Raises:
        LlmcseError: An unknown template, ``icl`` out of range, or a ``max_seq_length`` that
            leaves no room for the sentence.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer

    from llmcse.utils.modelspec import auto_device, model_kwargs_for, resolve_model_path

    tpl = get_template(template)
    cleanup = Cleanup(strip, straight_quotes, final_period, single_quotes, question_to_period)
    select_demos(icl, demos)  # validate early
    device = device or auto_device()
    path = resolve_model_path(base)

    probe = AutoTokenizer.from_pretrained(path)
    # Persisted in tokenizer_config.json: given at load time, they are saved as init kwargs
    # (setting the attribute afterwards is not saved in transformers 5).
    processor_kwargs: dict = {"padding_side": "left", "truncation_side": "right"}
    if probe.pad_token is None:
        if probe.eos_token is None:
            raise LlmcseError(f"{base}: the tokenizer has neither a pad nor an EOS token to pad with")
        processor_kwargs["pad_token"] = probe.eos_token  # never attended: the mask hides it
    add_bos = tokenizer_adds_bos(probe)

    transformer = Transformer(
        path,
        model_kwargs=model_kwargs_for(dtype, device, quantization),
        processor_kwargs=processor_kwargs,
        # "message" makes every plain string go through the chat template below.
        modality_config={
            "text": {"method": "forward", "method_output_name": "last_hidden_state"},
            "message": {"method": "forward", "method_output_name": "last_hidden_state", "format": "flat"},
        },
        module_output_name="token_embeddings",
        processing_kwargs={"chat_template": {"restore_suffix": True}},
    )
    tokenizer = transformer.tokenizer
    tokenizer.chat_template = chat_template_source(tpl, icl, cleanup, demos, add_bos=add_bos)
    if max_seq_length is not None:
        transformer.max_seq_length = max_seq_length
    _check_room_for_the_sentence(tokenizer, tpl, icl, cleanup, demos, add_bos)

    modules = [transformer, Pooling(transformer.get_embedding_dimension(), pooling_mode="lasttoken")]
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, device=device, similarity_fn_name="cosine")
    model.eval()
    logger.info("PromptEOL model from %s: template %s, %d demo(s), prompt %r", base, tpl.name, icl,
                render_prompt("[text]", tpl, icl, NO_CLEANUP, demos))
    return model


def _check_room_for_the_sentence(tokenizer, tpl, icl, cleanup, demos, add_bos) -> None:
    fixed = render_prompt("", tpl, icl, cleanup, demos, bos_token=tokenizer.bos_token if add_bos else "")
    n_fixed = len(tokenizer(fixed, add_special_tokens=False).input_ids)
    limit = tokenizer.model_max_length
    if limit is not None and limit < n_fixed + 8:
        raise LlmcseError(f"max_seq_length {limit} leaves no room for the sentence: the template and demos alone "
                          f"take {n_fixed} tokens")


def save_prompteol_model(
    base: str,
    out: str | Path,
    template: str = "prompteol",
    icl: int = 0,
    *,
    verify: bool = True,
    **build_kwargs,
) -> Path:
    """Build a PromptEOL model and save it as a plain sentence-transformers folder.

    Besides the sentence-transformers files, ``prompteol.json`` records the configuration and
    the model card (README.md) gets a PromptEOL section. With ``verify``, the folder is loaded
    back with plain ``SentenceTransformer(out)`` and must give the builder's vectors.

    Args:
        base, template, icl, **build_kwargs: As for ``build_prompteol_model``.
        out: The output folder.
        verify: Reload and compare (about a second for a 135M model).

    Returns:
        The output folder.
    """
    import numpy as np
    from sentence_transformers import SentenceTransformer

    out = Path(out)
    model = build_prompteol_model(base, template, icl, **build_kwargs)
    model.save(str(out))
    tpl = get_template(template)
    cleanup = Cleanup(**{f: build_kwargs.get(f, True) for f in Cleanup.__dataclass_fields__})  # the builder's defaults
    demos = build_kwargs.get("demos")
    cfg = PromptEOLConfig(base=base, template=tpl.name, icl=icl, cleanup=cleanup,
                          normalize=build_kwargs.get("normalize", True),
                          max_seq_length=model.max_seq_length, dtype=build_kwargs.get("dtype"))
    record = {**asdict(cfg), "prompt": render_prompt("[text]", tpl, icl, NO_CLEANUP, demos),
              "demos": [list(d) for d in select_demos(icl, demos)], "template_source": tpl.source,
              "llmcse_version": _llmcse_version()}
    (out / "prompteol.json").write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    _append_model_card(out, cfg, record)

    if verify:
        sample = ["A man is playing a guitar.", "  Is it “raining” today? ", "x"]
        expected = model.encode(sample, convert_to_numpy=True)  # (3, dim)
        loaded = SentenceTransformer(str(out), device=str(model.device))
        got = loaded.encode(sample, convert_to_numpy=True)  # (3, dim)
        if not np.allclose(expected, got, atol=1e-5):
            raise LlmcseError(f"the saved folder {out} does not reproduce the built model "
                              f"(max difference {np.abs(expected - got).max():.2e})")
    return out


def _llmcse_version() -> str:
    from llmcse import __version__

    return __version__


def _append_model_card(out: Path, cfg: PromptEOLConfig, record: dict) -> None:
    readme = out / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    c = cfg.cleanup
    section = f"""
## PromptEOL

Made by `llmcse prompteol` from `{cfg.base}`: the embedding of a sentence is the last layer's hidden
state of the final token of the prompt (template `{cfg.template}`, {cfg.icl} in-context demo(s)):

```
{record['prompt']}
```

- Loads with plain `SentenceTransformer(path)` (sentence-transformers >= 6.0): the prompt lives in
  `chat_template.jinja`, and `sentence_bert_config.json` routes every plain text input through it
  (`modality_config` with `message`). No llmcse, no `trust_remote_code`.
- Text cleanup inside the template: strip {c.strip}, straight quotes {c.straight_quotes}, final
  period {c.final_period}, `"` to `'` {c.single_quotes}, final `?` to `.` {c.question_to_period}.
- Truncation cuts the sentence, never the template (`restore_suffix`); left padding; last-token pooling.
- Pass plain strings only: a `prompt`/`prompt_name` or a text pair raises an error.

Reference: Jiang et al., Scaling Sentence Embeddings with Large Language Models (Findings of ACL 2024).

```bibtex
{CITATION}
```
"""
    readme.write_text(text.rstrip("\n") + "\n" + section, encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# The paper's naive recipe, for checks
# ---------------------------------------------------------------------------------------------


def last_position_embeddings(model: SentenceTransformer, texts: Sequence[str], padding_side: str) -> torch.Tensor:
    """The paper's recipe outside sentence-transformers: ``hidden_states[-1][:, -1, :]``.

    Renders each text with the model's saved template, pads the batch on ``padding_side`` and
    reads the **last position** of every row, whatever the mask says. Correct with left padding;
    with right padding a shorter row's last position is a pad token, so its vector is wrong
    (the warning of the paper). Not normalised.

    Returns:
        (len(texts), hidden) float tensor.
    """
    import torch

    transformer = model[0]
    tokenizer = transformer.tokenizer
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False) for t in texts]
    old_side = tokenizer.padding_side
    tokenizer.padding_side = padding_side
    try:
        batch = tokenizer(prompts, padding=True, add_special_tokens=False, return_tensors="pt").to(model.device)
    finally:
        tokenizer.padding_side = old_side
    with torch.no_grad():
        hidden = transformer.auto_model(**batch).last_hidden_state  # (batch, seq, hidden)
    return hidden[:, -1, :].float()  # (batch, hidden)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

EPILOG = """examples:
  llmcse prompteol --base SmolLM2-135M-Instruct --out runs/prompteol-smollm2
  llmcse prompteol --base SmolLM2-135M-Instruct --template pretended_cot --icl 1 --out runs/pe-cot-icl1
  llmcse eval --model runs/prompteol-smollm2 --tasks stsb --dtype bfloat16
The folder loads with plain SentenceTransformer(path); no llmcse needed.
templates: """ + ", ".join(sorted(TEMPLATES))


def cmd_prompteol(args: argparse.Namespace) -> int:
    """``llmcse prompteol``: build, save and verify a PromptEOL model folder."""
    build_kwargs = dict(
        strip=not args.no_strip, straight_quotes=not args.no_straight_quotes, final_period=not args.no_final_period,
        single_quotes=not args.keep_double_quotes, question_to_period=not args.keep_question_mark,
        max_seq_length=args.max_seq_length, dtype=args.dtype, device=args.device, normalize=not args.no_normalize,
    )
    tpl = get_template(args.template)
    example = render_prompt("[text]", tpl, args.icl, NO_CLEANUP)
    if args.dry_run:
        print(json.dumps({"base": args.base, "out": args.out, "template": tpl.name, "icl": args.icl,
                          "prompt": example, **build_kwargs}, indent=2, ensure_ascii=False))
        return 0
    out = save_prompteol_model(args.base, args.out, tpl.name, args.icl, verify=not args.no_verify, **build_kwargs)
    print(f"saved PromptEOL model ({tpl.name}, {args.icl} demo(s)) to {out}\nprompt: {example}")
    if not args.no_verify:
        print("checked: SentenceTransformer(path) reloads it and gives the same vectors")
    return 0


def add_prompteol_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``prompteol`` subcommand on an argparse subparsers object."""
    p = subparsers.add_parser(
        "prompteol", help="save a decoder LLM as a PromptEOL sentence embedder (plain sentence-transformers folder)",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True,
                   help="causal LM: folder, hub id, bundled name (SmolLM2-135M-Instruct) or .gguf")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--template", default="prompteol", help="prompt template (default: prompteol; see below)")
    p.add_argument("--icl", type=int, default=0, help=f"in-context demos to prepend (0-{len(DEMOS)}; default 0)")
    p.add_argument("--no-strip", action="store_true", help="keep leading/trailing whitespace")
    p.add_argument("--no-straight-quotes", action="store_true", help="keep typographic quotes")
    p.add_argument("--no-final-period", action="store_true",
                   help="do not add '.' to sentences that end without . ? \" '")
    p.add_argument("--keep-double-quotes", action="store_true", help="do not turn \" into ' inside the sentence")
    p.add_argument("--keep-question-mark", action="store_true", help="do not turn a final ? into .")
    p.add_argument("--max-seq-length", type=int, help="token budget of the whole prompt (the sentence is truncated)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="dtype of the saved weights (default float32)")
    p.add_argument("--device", default="cpu", help="device used while building and verifying (default cpu)")
    p.add_argument("--no-normalize", action="store_true", help="leave out the Normalize module")
    p.add_argument("--no-verify", action="store_true", help="skip reloading the saved folder to compare vectors")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=cmd_prompteol)
    return p
