"""Checks of the scale settings: ``detector_padding`` (how far the detector is zero-padded in
reciprocal space) and ``cluster`` (where a distributed run evaluates).

Values (YAML, CLI, configuration objects)
    ``auto``
        pad when the data reach beyond the 2/3-Nyquist band limit of the unpadded window (the
        smallest FFT-friendly window whose band limit contains the data, see
        :mod:`caviar_napari.core.geometry`);
    ``none``
        never pad;
    ``"NxM"`` (also ``N×M``, or a pair ``[N, M]``)
        pad to an ``N × M`` window (at least the detector);
    a number
        the reconstruction pixel size in Å: the window becomes ``round(1 / (p · dk))`` pixels
        (at least the detector), so the pixel is ``p`` to within the detector's sampling.

:func:`check_detector_padding` normalises a value to ``"auto"``, ``"none"``, ``"NxM"`` or a
float; :func:`padding_kind` splits a normalised value into its kind and payload.
"""

from __future__ import annotations

import math
import re
from typing import Any

from caviar_napari.data.checks import where
from caviar_napari.errors import InputError

__all__ = ["PADDING_HELP", "check_cluster", "check_detector_padding", "padding_kind"]

#: One-line description of the accepted values (messages, CLI help).
PADDING_HELP = "auto, none, a window 'NxM' (pixels) or a reconstruction pixel size in Å"

_SHAPE = re.compile(r"^\s*(\d+)\s*[x×X*]\s*(\d+)\s*$")


def check_detector_padding(value: Any, name: str = "detector_padding", source: str = "") -> Any:
    """``value`` normalised: ``"auto"``, ``"none"``, ``"NxM"`` (N, M ≥ 2) or a float > 0 (Å)."""

    def bad() -> InputError:
        return InputError(f"{where(source)}'{name}' must be {PADDING_HELP}; got {value!r}")

    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("auto", "none"):
            return text
        m = _SHAPE.match(text)
        if m:
            n, k = int(m.group(1)), int(m.group(2))
            if min(n, k) < 2:
                raise bad()
            return f"{n}x{k}"
        try:
            value = float(text)
        except ValueError:
            raise bad() from None
    if isinstance(value, list | tuple) and len(value) == 2:
        if all(isinstance(v, int) and not isinstance(v, bool) and v >= 2 for v in value):
            return f"{value[0]}x{value[1]}"
        raise bad()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad()
    if not (math.isfinite(value) and value > 0):
        raise bad()
    return float(value)


def padding_kind(value: Any) -> tuple[str, Any]:
    """``("auto" | "none", None)``, ``("shape", (N, M))`` or ``("pixel", p_A)``."""
    value = check_detector_padding(value)
    if value in ("auto", "none"):
        return value, None
    if isinstance(value, str):
        n, k = value.split("x")
        return "shape", (int(n), int(k))
    return "pixel", float(value)


_CLUSTER = re.compile(r"^(local:\d+|tcp://[^\s/:]+:\d+|tls://[^\s/:]+:\d+)$")


def check_cluster(value: Any, source: str = "") -> str:
    """A Dask cluster: ``local:N`` (N ≥ 1 worker processes) or ``tcp://HOST:PORT``."""
    text = str(value).strip() if isinstance(value, str) else ""
    if not _CLUSTER.match(text) or (text.startswith("local:") and int(text[6:]) < 1):
        raise InputError(
            f"{where(source)}'cluster' must be local:N (N ≥ 1 worker processes) or "
            f"tcp://HOST:PORT (a Dask scheduler); got {value!r}"
        )
    return text
