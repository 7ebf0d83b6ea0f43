"""argparse ``type=`` validators for numeric options.

Each validator takes the option's string and returns the parsed value, or raises
``argparse.ArgumentTypeError`` so that argparse prints its usual one-line usage error
(``llmcse generate: error: argument --top-p: must be in (0, 1], got 0``) and exits 2.

Usage::

    from llmcse.utils.validate import positive_int, probability
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--top-p", type=probability, default=0.95)

The same checks are available for values that do not come from argparse (recipe TOML,
``--set KEY=VALUE``) through :func:`check`, which raises ``ValueError`` with the same message.
"""

from __future__ import annotations

import argparse
import math
from typing import Callable

__all__ = [
    "positive_int", "non_negative_int", "positive_float", "non_negative_float", "probability",
    "unit_interval", "int_at_least", "check",
]


def _parse(text: str, kind: type, what: str):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):  # float("nan"), float("inf") parse fine
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    """A validator for integers >= ``minimum``."""

    def validate(text: str) -> int:
        value = _parse(text, int, "an integer")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    validate.__name__ = f"int_at_least_{minimum}"  # argparse names the type in some messages
    return validate


positive_int = int_at_least(1)
positive_int.__name__ = "positive_int"
non_negative_int = int_at_least(0)
non_negative_int.__name__ = "non_negative_int"


def positive_float(text: str) -> float:
    """A finite float > 0."""
    value = _parse(text, float, "a number")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value:g}")
    return value


def non_negative_float(text: str) -> float:
    """A finite float >= 0 (e.g. a sampling temperature: 0 means greedy)."""
    value = _parse(text, float, "a number")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value:g}")
    return value


def probability(text: str) -> float:
    """A float in (0, 1]: a nucleus ``top_p`` (0 would keep no token at all)."""
    value = _parse(text, float, "a number")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {value:g}")
    return value


def unit_interval(text: str) -> float:
    """A float in [0, 1] (a quantile or a fraction)."""
    value = _parse(text, float, "a number")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value:g}")
    return value


def check(validator: Callable[[str], object], value: object, name: str):
    """Run a validator on a value from elsewhere (TOML, ``--set``): ``ValueError("name: must be ...")``.

    Booleans are refused for numeric validators (TOML ``true`` is not ``1``).
    """
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    try:
        return validator(str(value))
    except argparse.ArgumentTypeError as e:
        raise ValueError(f"{name}: {e}") from None
