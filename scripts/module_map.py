"""Write the module map of docs/ARCHITECTURE.md from the package itself.

Every module of ``caviar_napari`` with the first sentence of its docstring, grouped by package
in layer order (data types at the bottom, widgets on top), between the markers
``<!-- module map -->`` and ``<!-- end module map -->``. Run after adding or moving modules::

    python scripts/module_map.py            # rewrite docs/ARCHITECTURE.md
    python scripts/module_map.py --check    # exit 1 when the file is out of date (the tests)
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "caviar_napari"
DOC = ROOT / "docs" / "ARCHITECTURE.md"
BEGIN, END = "<!-- module map -->", "<!-- end module map -->"
#: Packages in layer order, bottom first, with what each may import.
LAYERS = {
    ".": "the package root",
    "data": "types every layer passes around; imports only errors",
    "core": "the physics engine (Qt-free); imports data",
    "io": "readers and writers; imports data (core where unavoidable)",
    "analysis": "atoms, lattice, correlations, dispersion, calibration, depth; imports data, core",
    "simulate": "abTEM presets and thermal models; imports analysis, core, io",
    "workflows": "one module per step: options in, a summary with warnings out",
    "cli": "the caviar command line over the workflows",
    "viewmodels": "Qt-free state of each dock",
    "_napari": "hooks named in napari.yaml (readers, writers, sample data, layers)",
    "_qt": "thin Qt widgets over the view-models",
}


def first_sentence(path: Path) -> str:
    """The first sentence of a module's docstring (one line)."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    text = " ".join(doc.strip().split("\n\n")[0].split())
    end = text.find(". ")
    return (text if end < 0 else text[: end + 1]).rstrip()


def module_map() -> str:
    """The map as a fenced text block."""
    lines = ["```"]
    for package, role in LAYERS.items():
        folder = PACKAGE if package == "." else PACKAGE / package
        name = "caviar_napari/" if package == "." else f"  {package}/"
        lines.append(f"{name:<28}{role}")
        files = sorted(folder.glob("*.py")) if package == "." else sorted(folder.rglob("*.py"))
        for path in files:
            if path.name == "__init__.py" and path.parent == folder:
                continue
            rel = path.relative_to(folder).as_posix()
            if rel.endswith("__init__.py"):
                rel = rel[: -len("__init__.py")]
            lines.append(f"    {rel:<24}{first_sentence(path)}")
    lines.append("```")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = DOC.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        print(f"{DOC}: no {BEGIN} … {END} markers", file=sys.stderr)
        return 2
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{module_map()}\n{END}{tail}"
    if args.check:
        return 0 if new == text else 1
    DOC.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
