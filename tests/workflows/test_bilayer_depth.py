"""Issue 16, must-show 1 at reduced size: a multislice, multi-state reconstruction of
``hbn-bilayer-gap`` puts each layer in its own slices.

The two hBN layers are 120 Å apart (1.5 × the depth of field 2λ/α² = 79 Å at 60 kV, 35 mrad) and
shifted so that no projected atoms coincide.  ``caviar reconstruct`` with the staged recipe
(stage 1: one state, object and probe, 4 slices of 40 Å covering the gap; stage 2: object states)
must give z-ranges 0:2 and 2:4 whose phases correlate with their own layer's true phase at ≥ 0.9
and with the other layer's at ≤ 0.3 (the two true phases correlate at −0.14 with each other).
The full-size version is ``benchmarks/bench_bilayer_depth.py`` (docs/depth.md).
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from caviar_napari.analysis import depth
from caviar_napari.cli import main
from caviar_napari.io.atoms_file import read_atoms_zranges
from caviar_napari.io.reconstruction import load_reconstruction
from caviar_napari.io.truth_layers import read_truth_layers

pytest.importorskip("abtem")

CONFIG = """\
device: cpu
seed: 0
update_every: 0
detector_padding: none
stages:
  - name: mean object
    iterations: 30
    object_states: 1
    probe_modes: 1
    slices: 4
    slice_thickness_A: 40.0
    refine: [object, probe]
  - name: object states
    iterations: 6
    object_states: 3
    probe_modes: 1
    slices: 4
    slice_thickness_A: 40.0
    refine: [object]
"""


@pytest.fixture(scope="module")
def bilayer_recon(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bilayer")
    data, recon, cfg = folder / "data.h5", folder / "recon.h5", folder / "stages.yaml"
    cfg.write_text(CONFIG)
    sim = ["simulate", "hbn-bilayer-gap", "--out", str(data), "--scan", "8", "8",
           "--step", "0.6", "--configs", "3"]  # fmt: skip
    assert main(sim) == 0
    assert main(["reconstruct", str(data), "--out", str(recon), "--config", str(cfg)]) == 0
    return data, recon


def test_each_layer_in_its_own_slices(bilayer_recon):
    data, recon = bilayer_recon
    state = load_reconstruction(recon)
    assert state.object.shape[:2] == (3, 4)
    layers = read_truth_layers(data)
    with h5py.File(data, "r") as f:
        origin = f["ground_truth"].attrs["phase_origin_A"]
        pixel = f["ground_truth"].attrs["phase_pixel_size_A"]
    region = np.stack([state.scan_positions_A.min(0), state.scan_positions_A.max(0)])
    r = np.zeros((2, 2))
    for i, spec in enumerate(("0:2", "2:4")):
        img = depth.zrange_phase(
            state.object, depth.zrange_from_spec(spec, state.slice_thickness_A)
        )
        for j, layer in enumerate(layers):
            r[i, j] = depth.phase_correlation(
                img, state.pixel_size_A, state.object_origin_A, layer.phase, pixel, origin, region
            )
    assert r[0, 0] >= 0.9 and r[1, 1] >= 0.9, r
    assert r[0, 1] <= 0.3 and r[1, 0] <= 0.3, r


def test_zranges_match_their_layers(bilayer_recon, tmp_path):
    data, recon = bilayer_recon
    out = tmp_path / "atoms.h5"
    argv = ["atoms", str(recon), "--out", str(out), "--zrange", "top=0:2", "--zrange",
            "bottom=2:4"]  # fmt: skip
    assert main(argv) == 0
    ranges = read_atoms_zranges(out)
    layers = read_truth_layers(data)
    with h5py.File(data, "r") as f:
        mean = f["ground_truth/mean_positions_A"][()]
        box = tuple(f["ground_truth"].attrs["box_A"][:2])
    matches = depth.match_layers(ranges, layers, mean, box)
    assert [(m.zrange, m.layer) for m in matches] == [("top", "upper"), ("bottom", "lower")]
    for m in matches:
        assert m.depth_offset_A == 0.0 and m.site_fraction >= 0.9 and m.angle_deg < 1.0
