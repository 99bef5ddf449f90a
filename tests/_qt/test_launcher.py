"""The ``caviar-napari`` launcher: docks, sample data, files, console entry point (Xvfb)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from caviar_napari._napari import sample_data
from caviar_napari._qt import launcher
from caviar_napari._qt import reconstruction_widget as rw
from caviar_napari.core import engine
from caviar_napari.data import config as cfg
from caviar_napari.errors import InputError
from caviar_napari.io.dataset import STEMDataset
from caviar_napari.io.reconstruction import save_reconstruction
from caviar_napari.viewmodels.layer_keys import DATASET_KEY, PATH_KEY, STATE_KEY

WAIT_MS = 20000


def _tiny_dataset() -> STEMDataset:
    k = 24
    q = np.hypot(*np.meshgrid(np.arange(k) - k // 2, np.arange(k) - k // 2, indexing="ij"))
    disc = (q <= 6).astype(np.float32)
    scale = 1.0 + 0.1 * np.random.default_rng(1).random((4, 4, 1, 1))
    return STEMDataset(
        intensities=(disc * scale).astype(np.float32),
        energy_eV=60e3,
        convergence_semiangle_mrad=12.0,
        scan_step_A=1.0,
        angular_sampling_mrad=2.0,
        source="tiny.h5",
    )


def _tiny_sample():
    dataset = _tiny_dataset()
    meta = {DATASET_KEY: dataset, PATH_KEY: "tiny.h5"}
    return [
        (dataset.intensities, {"name": "tiny 4D-STEM", "metadata": meta}, "image"),
        (dataset.intensities.sum(axis=(2, 3)), {"name": "tiny virtual BF"}, "image"),
    ]


def test_parser_defaults_and_options():
    args = launcher.build_parser().parse_args([])
    assert args.sample == "hbn-correlated" and not args.no_sample and args.file == []
    args = launcher.build_parser().parse_args(
        ["--no-sample", "--file", "a.h5", "--file", "b.h5", "--sample", "hbn-static"]
    )
    assert args.no_sample and args.file == ["a.h5", "b.h5"] and args.sample == "hbn-static"


def test_open_file_reconstruction_can_be_continued(make_napari_viewer, tmp_path):
    dataset = _tiny_dataset()
    config = cfg.single_stage(iterations=2, object_states=2, device="cpu", update_every=0)
    state = engine.run_to_end(dataset, config)
    path = tmp_path / "recon.h5"
    save_reconstruction(path, state, source="tiny.h5")

    viewer = make_napari_viewer()
    widgets = launcher.open_window(viewer, sample=None, files=[str(path)])
    names = [layer.name for layer in viewer.layers]
    assert names == ["recon phase", "recon amplitude", "recon probe modes", "recon scan positions"]
    np.testing.assert_allclose(viewer.layers["recon scan positions"].data, state.scan_positions_A)
    phase = viewer.layers["recon phase"]
    np.testing.assert_allclose(phase.data, np.angle(state.object), atol=1e-6)
    np.testing.assert_allclose(phase.scale, (1, 1, *state.pixel_size_A))
    np.testing.assert_allclose(phase.translate, (0, 0, *state.object_origin_A))
    assert phase.metadata[STATE_KEY].iteration == 2
    widget = widgets["Reconstruction"]
    assert widget.start_combo.findData("recon phase") > 0


def test_main_opens_docks_and_sample_ready_to_start(make_napari_viewer, qtbot, monkeypatch):
    import napari

    viewer = make_napari_viewer()
    ran = []
    monkeypatch.setattr(napari, "Viewer", lambda **kwargs: viewer)
    monkeypatch.setattr(napari, "run", lambda: ran.append(True))
    monkeypatch.setattr(sample_data, "hbn_correlated", _tiny_sample)
    docks = {}
    real_add_docks = launcher.add_docks
    monkeypatch.setattr(launcher, "add_docks", lambda v: docks.update(real_add_docks(v)) or docks)
    assert launcher.main([]) == 0
    assert ran == [True]

    # every dock whose widget class exists, in order, tabbed, Reconstruction in front
    expected = [n for n, module, cls in launcher.DOCKS if launcher._widget_class(module, cls)]
    assert list(docks) == expected and expected[0] == "Reconstruction"
    dock, widget = docks["Reconstruction"]
    assert isinstance(widget, rw.ReconstructionWidget)
    tabbed = set(dock.window().tabifiedDockWidgets(dock))
    assert {d for name, (d, _) in docks.items() if name != "Reconstruction"} <= tabbed
    # short tab titles (napari's own would be cut to "Reconstruction (cavia…")
    assert [d.windowTitle() for d, _ in docks.values()] == expected
    # the window fits the screen
    window = dock.window()
    available = window.screen().availableGeometry()
    assert window.width() <= available.width() and window.height() <= available.height()

    # the sample is loaded and selected; the memory estimate allows Start
    assert [layer.name for layer in viewer.layers] == ["tiny 4D-STEM", "tiny virtual BF"]
    assert widget.input_combo.currentData() == "layer:tiny 4D-STEM"
    assert widget.optics.energy_eV.value() == 60000.0
    qtbot.waitUntil(lambda: "needs" in widget.memory_label.text(), timeout=WAIT_MS)
    assert widget.start_button.isEnabled()
    with pytest.raises(InputError, match="no-such-sample"):
        launcher.open_sample(viewer, "no-such-sample")
    widget.shutdown()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--file", "{tmp}/nope.h5"], "nope.h5: no such file"),
        (["--file", "{tmp}/fake.h5"], "fake.h5: not a file caviar-napari reads"),
        (["--sample", "foo"], "unknown sample 'foo'; choose one of hbn-bilayer-gap, hbn-corr"),
    ],
)
def test_argument_errors_are_one_line_and_exit_2(monkeypatch, capsys, tmp_path, argv, message):
    import napari

    (tmp_path / "fake.h5").write_text("not an HDF5 file")
    monkeypatch.setattr(napari, "Viewer", lambda **kwargs: pytest.fail("no window expected"))
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert launcher.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("caviar-napari: error: ")
    assert message in err


def test_console_script_argument_error_has_no_traceback(tmp_path):
    """The console entry point itself: exit status 2, one line on stderr, no traceback."""
    proc = subprocess.run(
        [sys.executable, "-m", "caviar_napari._qt.launcher", "--file", str(tmp_path / "x.h5")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"caviar-napari: error: {tmp_path / 'x.h5'}: no such file"
