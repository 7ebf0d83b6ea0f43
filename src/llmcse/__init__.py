"""llmcse: turn large language models into better text embeddings.

Stages live in one folder each and pass files from left to right:
``data`` -> ``llm`` -> ``synth`` -> ``train`` -> ``embed`` -> ``retrieval`` -> ``eval``.
Importing the package is cheap: heavy libraries (torch, transformers) load in the
functions that need them.
"""

from llmcse.errors import DataFormatError, LlmcseError, MissingDataError

__version__ = "0.1.0"

__all__ = ["DataFormatError", "LlmcseError", "MissingDataError", "__version__"]
