"""The npe2 manifest is found and valid in the editable install and in a built wheel, and its
reader offers exactly the formats of the io reader registry."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

from caviar_napari._napari.readers import filename_patterns
from caviar_napari.io.readers import READERS

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"

pytestmark = pytest.mark.skipif(not PYPROJECT.exists(), reason="needs the source tree")

VALIDATE = (
    "import caviar_napari, npe2; "
    "pm = npe2.PluginManifest.from_distribution('caviar-napari'); "
    "pm.validate_imports(); "
    "print(caviar_napari.__file__); "
    "print(sorted(w.display_name for w in pm.contributions.widgets)); "
    "print(sorted(s.key for s in pm.contributions.sample_data))"
)

WIDGETS = "['Atoms', 'Correlations', 'Diagnostics', 'Dispersion', 'Reconstruction']"
SAMPLES = (
    "['hbn-bilayer-gap', 'hbn-correlated', 'hbn-correlated-psc', 'hbn-einstein', 'hbn-static', "
    "'hbn-twisted-bilayer', 'si110-static']"
)


def test_manifest_in_installed_package() -> None:
    out = subprocess.run(
        [sys.executable, "-c", VALIDATE], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[1] == WIDGETS
    assert out[2] == SAMPLES


def test_manifest_and_demo_data_in_wheel(tmp_path: Path) -> None:
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheel_dir.glob("caviar_napari-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert zf.read("caviar_napari/napari.yaml") == (REPO / "napari.yaml").read_bytes()
    for demo in (REPO / "resources").glob("*.h5"):
        assert f"caviar_napari/resources/{demo.name}" in names

    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    # -S: no .pth files, so the editable install's import hook stays out; the environment's
    # site-packages still provides npe2 and the dependencies, after the wheel's folder.
    site_packages = sysconfig.get_paths()["purelib"]
    env = {"PYTHONPATH": os.pathsep.join([str(target), site_packages]), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-S", "-c", VALIDATE],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tmp_path,  # not the source tree, whose caviar_napari/ would shadow the wheel's
    ).stdout.splitlines()
    assert out[0].startswith(str(target)), "the wheel's package was not the one imported"
    assert out[1] == WIDGETS
    assert out[2] == SAMPLES


def _reader_contribution(manifest: Path) -> dict:
    data = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    (reader,) = data["contributions"]["readers"]
    return reader


def test_reader_patterns_are_the_registry_extensions() -> None:
    """napari.yaml offers every registry extension and nothing else (reconstruction and ATOMS
    files are HDF5: the HDF5 entry's patterns cover them), and folders iff a format is one."""
    package_manifest = REPO / "caviar_napari" / "napari.yaml"
    assert package_manifest.read_bytes() == (REPO / "napari.yaml").read_bytes()
    reader = _reader_contribution(package_manifest)
    patterns = reader["filename_patterns"]
    assert len(patterns) == len(set(patterns)), f"duplicate patterns in napari.yaml: {patterns}"
    assert sorted(patterns) == sorted(filename_patterns())
    assert {"*.hdf", "*.py4dstem", "*.h5"} <= set(patterns)
    assert reader.get("accepts_directories", False) == any(r.directory for r in READERS)
