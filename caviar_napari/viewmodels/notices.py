"""Warnings that results carry (states that did not separate, displacements at the noise
floor, unphysical frequencies …), collected for the docks to show."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def result_warnings(*results: Any) -> list[str]:
    """The warnings of ``results``, in order, without repeats.

    A result may carry them as a ``warnings`` attribute (a string or an iterable of strings),
    or, for a mapping (e.g. a file's provenance), under the key ``"warnings"``; ``None`` and
    results without warnings contribute nothing.

    Parameters
    ----------
    results
        Result objects (``ReconState``, ``AtomsData``, ``CorrelationsData``, ``DispersionData``,
        …) or None.

    Returns
    -------
    list of str
        Non-empty, stripped warning texts.
    """
    out: list[str] = []
    for result in results:
        if result is None:
            continue
        found = getattr(result, "warnings", None)
        if found is None and isinstance(result, dict):
            found = result.get("warnings")
        for text in _as_texts(found):
            if text not in out:
                out.append(text)
    return out


#: The command line's words in texts the analysis writes for ``caviar``, and the docks' words.
DOCK_WORDS = (
    ("rho_nn", "ρ_nn"),
    ("the offset subtracted (--subtract-offset)", "'subtract the uniform offset' ticked"),
    (" (--subtract-offset)", ""),
    ("give --noise-floor-A", "give the noise floor"),
    ("use --estimator force-constants", "choose the force-constants estimator"),
)


def dock_words(text: str) -> str:
    """A text written for the command line, with the docks' names for its options."""
    for cli, dock in DOCK_WORDS:
        text = text.replace(cli, dock)
    return text


def _as_texts(found: Any) -> Iterable[str]:
    if found is None:
        return ()
    if isinstance(found, str):
        found = [found]
    return [str(t).strip() for t in found if str(t).strip()]
