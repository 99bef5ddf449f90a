"""The installed environment resolves (issue 12): every module of the package imports, every
third-party package the code imports is declared and imports, and the installed versions meet
the floors of ``pyproject.toml``.

A resolver that picks a broken release (``distributed`` 2021.4.1 next to a current dask fails
with ``cannot import name 'collections_to_dsk'``) fails here, by name, instead of deep inside a
simulation.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import pkgutil
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

import caviar_napari

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(caviar_napari.__file__).parent

#: Import name → distribution name, where they differ.
DISTRIBUTION = {
    "skimage": "scikit-image",
    "yaml": "pyyaml",
    "PIL": "pillow",
    "rsciio": "rosettasciio",
    "PyQt5": "pyqt5",
    "cupy": "cupy-cuda12x",
    "cupyx": "cupy-cuda12x",
}
#: Packages the code imports that arrive with a declared one (the declared one, and why).
TRANSITIVE = {"ase": "abtem"}  # abTEM's structures are ase.Atoms; abTEM requires ase
#: Imported only for ``device="gpu"``; absent on machines without CUDA.
GPU_ONLY = {"cupy", "cupyx"}
#: Imported by name at run time rather than by an import statement (the module, the user).
DYNAMIC = {
    "rsciio": "io/readers.py: rosettasciio readers of detector formats",
    "dask.distributed": "abtem: its parallel computation (the 2021.4.1 breakage)",
    "magicgui": "napari's widget layer",
    "PyQt5": "the Qt binding of the pyqt5 extra",
}


def _declared() -> dict[str, Requirement]:
    """Distribution name → requirement, from the dependencies and every optional extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        texts += [t for t in extra if not t.startswith("caviar-napari")]
    reqs = [Requirement(t) for t in texts]
    return {r.name.lower(): r for r in reqs}


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level third-party modules imported anywhere in the package → the files importing them."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "caviar_napari" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(str(path.relative_to(PACKAGE)))
    return found


def _modules() -> list[str]:
    """Every module of the package (``__main__`` modules run on import and are left out)."""
    found = pkgutil.walk_packages([str(PACKAGE)], prefix="caviar_napari.")
    return sorted(m.name for m in found if not m.name.endswith(".__main__"))


def test_the_scan_finds_the_packages_the_code_is_known_to_use():
    found = _third_party_imports()
    for name in ("numpy", "scipy", "h5py", "skimage", "abtem", "napari", "qtpy", "matplotlib"):
        assert name in found, name
    assert "caviar_napari.workflows.study" in _modules()


def test_every_imported_package_is_declared():
    declared = _declared()
    missing = []
    for module, files in sorted(_third_party_imports().items()):
        dist = DISTRIBUTION.get(module, TRANSITIVE.get(module, module)).lower()
        if dist not in declared:
            missing.append(f"{module} (imported in {sorted(files)})")
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


@pytest.mark.parametrize("module", sorted(set(_third_party_imports()) | set(DYNAMIC)))
def test_third_party_package_imports(module):
    top = module.split(".")[0]
    if top in GPU_ONLY:
        try:
            importlib.import_module(module)
        except ImportError:
            pytest.skip(f"{module}: GPU only, not installed here")
        return
    importlib.import_module(module)  # an ImportError here names the broken package


def test_installed_versions_meet_the_declared_floors():
    wrong = []
    for name, req in sorted(_declared().items()):
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if name in ("cupy-cuda12x",):  # the gpu extra
                continue
            wrong.append(f"{name}: not installed ({req})")
            continue
        if not req.specifier.contains(installed, prereleases=True):
            wrong.append(f"{name} {installed} does not satisfy {req}")
    assert not wrong, wrong


@pytest.mark.parametrize("module", _modules())
def test_every_module_of_the_package_imports(module):
    # nothing here needs a display or a GPU at import time (GPU code imports cupy lazily,
    # widgets create Qt objects only when built)
    importlib.import_module(module)
