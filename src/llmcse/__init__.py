"""llmcse: turn large language models into better text embeddings.

Stages live in one folder each and pass files from left to right:
``data`` -> ``llm`` -> ``synth`` -> ``train`` -> ``embed`` -> ``retrieval`` -> ``eval``.
Importing the package is cheap: heavy libraries (torch, transformers) load in the
functions that need them.

The stages are functions here too (``llmcse.generate(...)``, ``llmcse.evaluate(...)``,
``llmcse.run("recipe.toml")``; see ``llmcse.api``), loaded on first use.
"""

from llmcse.errors import DataFormatError, LlmcseError, MissingDataError

__version__ = "0.1.0"

API = ("generate", "filter", "train", "evaluate", "expand", "filter_expansions", "self_instruct_pairs",
       "record_pairs", "tune_generator", "sweep", "index", "embed", "search", "rfd", "icl_search", "export_mteb", "run", "Results",
       "RunResult")


def __getattr__(name: str):
    """``llmcse.generate`` & co.: the API module loads on first use, so ``import llmcse`` stays light."""
    if name in API:
        from llmcse import api

        return getattr(api, name)
    raise AttributeError(f"module 'llmcse' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *API])


__all__ = ["DataFormatError", "LlmcseError", "MissingDataError", "__version__", *API]
