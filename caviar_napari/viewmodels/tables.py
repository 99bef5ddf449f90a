"""A table for a dock to show: column headers, rows of texts and a tooltip (Qt-free)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Table"]


@dataclass(frozen=True)
class Table:
    """A table to show: column ``headers``, ``rows`` of texts, a ``tooltip``."""

    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]
    tooltip: str = ""
