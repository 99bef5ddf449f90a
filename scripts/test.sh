#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian/Ubuntu machine and run them.
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# Xvfb and the xcb libraries Qt needs for napari's OpenGL canvas (docs: NAPARI.md).
APT_PACKAGES="xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxkbcommon-x11-0
  libdbus-1-3 libgl1 libegl1 libxcb-image0 libxcb-randr0 libxcb-render-util0 libxcb-shape0
  libxcb-xfixes0 libxcb-cursor0 libfontconfig1"
missing=$(dpkg-query -W -f='${Package} ${Status}\n' $APT_PACKAGES 2>&1 | grep -v "install ok installed" || true)
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $APT_PACKAGES >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
.venv/bin/python -m pip install -q -e ".[testing]"

.venv/bin/ruff check caviar_napari tests benchmarks scripts
.venv/bin/ruff format --check caviar_napari tests benchmarks scripts
# The GUI runs on PyQt5 and on PyQt6 (napari deprecates PyQt5); the testing extra installs both.
# qtpy and pytest-qt must use the same binding: name it for both.
QT_API=pyqt5 PYTEST_QT_API=pyqt5 .venv/bin/python -m pytest "$@"
if [ $# -eq 0 ]; then  # the whole suite: the GUI tests once more, under PyQt6
  QT_API=pyqt6 PYTEST_QT_API=pyqt6 .venv/bin/python -m pytest -q tests/_qt tests/viewmodels
fi
