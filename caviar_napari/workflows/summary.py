"""What every workflow returns: the output written, a readable report and the warnings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(kw_only=True)
class StepSummary:
    """The common part of every workflow's summary.

    Attributes
    ----------
    out
        The file written (None when nothing was written, e.g. a dry run).
    lines
        The human-readable report, one line per item (what the CLI prints on stdout).
    warnings
        Things the user must know about the result (the CLI prints each on stderr as
        ``caviar CMD: warning: …``; they are also recorded in the output file's root attribute
        ``warnings_json``).
    """

    out: Path | None = None
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """:attr:`lines` joined by newlines."""
        return "\n".join(self.lines)
