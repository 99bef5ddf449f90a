"""``caviar reconstruct`` end to end on a tiny file, flags over the config, and bad inputs."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import yaml

from caviar_napari.cli import main
from caviar_napari.core.engine import plan_geometry
from caviar_napari.io.reconstruction import load_reconstruction

K = 24  # detector pixels of the shared `data_file` fixture (tests/cli/conftest.py)


def test_end_to_end_writes_valid_reconstruction(data_file, tmp_path, capsys):
    out = tmp_path / "recon.h5"
    status = main(
        [
            "reconstruct",
            str(data_file),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--iterations",
            "4",
            "--probe-modes",
            "2",
            "--seed",
            "5",
        ]
    )
    assert status == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("caviar reconstruct: 4 iterations")
    assert "final loss" in summary and str(out) in summary
    st = load_reconstruction(out)
    assert st.object.shape[:2] == (1, 1) and st.object.dtype == np.complex64
    # the probe window is the detector, zero-padded when the data reach beyond its band limit
    from caviar_napari.io.dataset import read_stem_h5

    window = plan_geometry(read_stem_h5(data_file), st.config).window
    assert st.probe.shape == (2, *window) and window[0] >= K and window[1] >= K
    assert len(st.loss) == 4 and st.loss[-1] < st.loss[0]
    assert st.source == "tiny.h5" and st.config.seed == 5 and st.config.device == "cpu"
    with h5py.File(out) as f:
        assert {"object", "probe", "loss"} <= set(f)
        assert {"pixel_size_A", "object_origin_A", "configuration", "version"} <= set(f.attrs)


def test_flags_override_config_file_and_resume(data_file, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "device": "cpu",
                "seed": 1,
                "stages": [
                    {"name": "a", "iterations": 9, "refine": ["object", "probe"]},
                    {"name": "b", "iterations": 9, "object_states": 4, "refine": ["object"]},
                ],
            }
        )
    )
    out = tmp_path / "r.h5"
    argv = [
        "reconstruct",
        str(data_file),
        "--out",
        str(out),
        "--config",
        str(cfg),
        "--iterations",
        "4",
        "--object-states",
        "2",
        "--checkpoint-every",
        "3",
        "--state-penalty",
        "0.5",
    ]
    assert main(argv) == 0
    assert "state penalty of 'b': λ = 0.5 (fixed)" in capsys.readouterr().out
    st = load_reconstruction(out)
    assert [s.state_penalty for s in st.config.stages] == [0.0, 0.5]
    assert [s.iterations for s in st.config.stages] == [2, 2]
    assert [s.object_states for s in st.config.stages] == [1, 2]
    assert st.object.shape[0] == 2 and st.config.seed == 1
    ckpt = tmp_path / "r.checkpoint.h5"
    assert load_reconstruction(ckpt).iteration == 3
    # resume the finished run with more iterations (6 in total): continues from its state
    out2 = tmp_path / "r2.h5"
    assert (
        main(
            [
                "reconstruct",
                str(data_file),
                "--out",
                str(out2),
                "--resume",
                str(out),
                "--iterations",
                "6",
            ]
        )
        == 0
    )
    st2 = load_reconstruction(out2)
    assert st2.iteration == 5 and st2.loss[:4] == st.loss
    assert "1 iteration (5 in total)" in capsys.readouterr().out
    # and on in double precision (every stage), as the single-precision stall warning advises
    out3 = tmp_path / "r3.h5"
    argv3 = ["reconstruct", str(data_file), "--out", str(out3), "--resume", str(out2)]
    assert main([*argv3, "--iterations", "8", "--precision", "double"]) == 0
    st3 = load_reconstruction(out3)
    assert st3.config.precision == "double" and st3.object.dtype == np.complex128
    assert st3.iteration > st2.iteration and st3.loss[:5] == st2.loss


def _bad_file(path, **changes):
    with h5py.File(path, "w") as f:
        data = changes.pop("intensities", np.ones((2, 2, 8, 8)))
        f.create_dataset("intensities", data=data)
        attrs = dict(
            energy_eV=80e3,
            convergence_semiangle_mrad=20.0,
            scan_step_A=0.5,
            angular_sampling_mrad=2.0,
        )
        attrs.update(changes)
        for k, v in attrs.items():
            if k == "positions_A":
                f.create_dataset("scan/positions_A", data=v)
            elif v is not None:
                f.attrs[k] = v


NAN = np.ones((2, 2, 8, 8))
NAN[0, 1, 2, 2] = np.nan


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"energy_eV": None}, "missing attribute 'energy_eV'"),
        ({"intensities": np.ones((4, 8, 8))}, "'intensities' must have rank 4"),
        ({"intensities": NAN}, "'intensities' contains 1 non-finite value"),
        ({"positions_A": np.zeros((2, 3, 2))}, "'scan/positions_A' must have shape"),
        ({"scan_step_A": -0.5}, "'scan_step_A' must be finite and positive"),
    ],
)
def test_bad_inputs_exit_2_with_message(tmp_path, capsys, changes, message):
    path = tmp_path / "bad.h5"
    _bad_file(path, **changes)
    status = main(["reconstruct", str(path), "--out", str(tmp_path / "o.h5"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert status == 2
    assert "caviar reconstruct: error:" in err and "bad.h5" in err and message in err
    assert not (tmp_path / "o.h5").exists()


def test_unreadable_file_and_bad_config(tmp_path, capsys, data_file):
    junk = tmp_path / "junk.h5"
    junk.write_text("not an HDF5 file")
    assert main(["reconstruct", str(junk), "--out", str(tmp_path / "o.h5")]) == 2
    assert "junk.h5" in capsys.readouterr().err
    bad_weight = ["reconstruct", str(data_file), "--out", str(tmp_path / "o.h5")]
    with pytest.raises(SystemExit):
        main([*bad_weight, "--state-penalty", "strong"])
    assert "--state-penalty: expected auto or a number, got 'strong'" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stages:\n  - iterations: 2\n    colour: red\n")
    argv = ["reconstruct", str(data_file), "--out", str(tmp_path / "o.h5"), "--config", str(cfg)]
    assert main(argv) == 2
    assert "unknown key 'colour' in stages[0]" in capsys.readouterr().err
