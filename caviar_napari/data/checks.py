"""Field checks shared by the data types.

Every failure is one :class:`~caviar_napari.errors.InputError` whose message starts with the
source (a file, or a file and a stage) when there is one, and names the item and its value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from caviar_napari.errors import InputError

__all__ = [
    "check_choice",
    "check_float",
    "check_int",
    "finite_scalar",
    "positive_pair",
    "where",
]


def where(source: str) -> str:
    """Message prefix naming ``source``: ``"<source>: "``, or ``""`` when there is none."""
    return f"{source}: " if source else ""


def check_int(value: Any, name: str, minimum: int, source: str) -> int:
    """``value`` as an ``int`` ≥ ``minimum`` (an integral float is accepted, a bool is not)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise InputError(f"{where(source)}'{name}' must be an integer, got {value!r}")
    if value < minimum:
        raise InputError(f"{where(source)}'{name}' must be ≥ {minimum}, got {value!r}")
    return int(value)


def check_float(
    value: Any, name: str, source: str, *, minimum: float | None = None, strict: bool = False
) -> float:
    """``value`` as a finite ``float`` (≥ ``minimum``, or > it when ``strict``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{where(source)}'{name}' must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise InputError(f"{where(source)}'{name}' must be finite, got {value!r}")
    if minimum is not None and (v < minimum or (strict and v == minimum)):
        op = ">" if strict else "≥"
        raise InputError(f"{where(source)}'{name}' must be {op} {minimum}, got {value!r}")
    return v


def check_choice(value: Any, name: str, choices: Sequence[str], source: str) -> str:
    """``value`` if it is one of ``choices``."""
    if value not in choices:
        raise InputError(
            f"{where(source)}'{name}' must be one of {', '.join(choices)}; got {value!r}"
        )
    return str(value)


def finite_scalar(value: ArrayLike, item: str, source: str, *, positive: bool = False) -> float:
    """A one-element number (Python or numpy, any shape of size 1) as a finite ``float``."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where(source)}'{item}' must be numeric, got {value!r}") from exc
    if arr.size != 1:
        raise InputError(f"{where(source)}'{item}' must be a scalar, got shape {arr.shape}")
    v = float(arr.ravel()[0])
    if not np.isfinite(v):
        raise InputError(f"{where(source)}'{item}' must be finite, got {v}")
    if positive and v <= 0:
        raise InputError(f"{where(source)}'{item}' must be positive, got {v}")
    return v


def positive_pair(value: ArrayLike, item: str, source: str) -> tuple[float, float]:
    """``value`` (a scalar or a pair) as a ``(y, x)`` pair of finite positive floats."""
    try:
        arr = np.asarray(value, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where(source)}'{item}' must be numeric, got {value!r}") from exc
    if arr.size == 1:
        arr = np.repeat(arr, 2)
    if arr.size != 2:
        raise InputError(
            f"{where(source)}'{item}' must be a scalar or a (y, x) pair, "
            f"got {arr.size} values {arr.tolist()}"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InputError(f"{where(source)}'{item}' must be finite and positive, got {arr.tolist()}")
    return float(arr[0]), float(arr[1])
