"""The Correlations dock's depth-resolved comparison and unit-cell table, without Qt.

Known truth: the ``depth_files`` fixture (tests/conftest.py): two independent hBN layers, the
upper one stiffer-bonded (ρ_nn higher), seen in the z-ranges ``top`` and ``bottom`` of one ATOMS
file as their ten configurations plus 5 pm of noise.  Each range is compared, as ``caviar
correlations --ground-truth`` does, with its own layer's realised tensor and with every layer.
"""

from __future__ import annotations

import pytest
from test_analysis_viewmodels import _finish

from caviar_napari.io.atoms_file import read_atoms_zranges
from caviar_napari.viewmodels import correlations as cvm

OWN = {"top": "upper", "bottom": "lower"}


@pytest.fixture(scope="module")
def computed(depth_files):
    atoms, data, _ = depth_files
    ranges = read_atoms_zranges(atoms)
    results = {label: _finish(cvm.compute_job(a, atoms_path=str(atoms)))[1]
               for label, a in ranges.items()}  # fmt: skip
    truth = _finish(cvm.truth_job(str(data)))[1]
    return ranges, results, truth


def test_each_zrange_is_compared_with_its_own_layer_and_every_layer(computed):
    ranges, results, truth = computed
    rho = {}
    for label, result in results.items():
        vm = cvm.CorrelationsViewModel()
        vm.accept(result)
        vm.truth = truth
        request = vm.comparison_request(False, cvm.PAIRS_NN, ranges)
        comparison = _finish(cvm.comparison_job(request))[1]
        text = vm.accept_comparison(comparison)
        own, other = OWN[label], OWN["bottom" if label == "top" else "top"]
        assert comparison.layer == own and vm.comparison is comparison
        assert f"z-range '{label}' ↔ layer '{own}': 100% of its atoms" in text
        assert "against every layer" in text
        assert f"ground_truth/layers/{own}" in vm.metrics.truth
        assert vm.metrics.pairing == "paired" and vm.metrics.csm.value > 0.97
        by_layer = {m.layer: m for m in comparison.layers}
        assert by_layer[own].matched and not by_layer[other].matched
        assert by_layer[other].csm < by_layer[own].csm - 0.1  # independent fields: not mixed
        table = cvm.layer_table(comparison)
        assert [row[0] for row in table.rows] == [
            name + (" (own)" if name == own else "") for name in ("upper", "lower")
        ]
        row = table.rows[[m.layer for m in comparison.layers].index(own)]
        assert float(row[1]) == pytest.approx(by_layer[own].csm, abs=5e-4)
        assert float(row[3]) == pytest.approx(by_layer[own].rho_nn_reconstructed, abs=5e-4)
        assert float(row[4]) == pytest.approx(by_layer[own].rho_nn_truth, abs=5e-4)
        rho[label] = by_layer[own]
    # ρ_nn of the two ranges is ordered as their layers' truths (upper stiffer-bonded)
    assert rho["top"].rho_nn_truth > rho["bottom"].rho_nn_truth + 0.05
    assert rho["top"].rho_nn_reconstructed > rho["bottom"].rho_nn_reconstructed + 0.05


def test_one_range_alone_is_matched_too_and_a_plain_source_has_no_layer_table(computed):
    ranges, results, truth = computed
    vm = cvm.CorrelationsViewModel()
    vm.accept(results["bottom"])
    vm.truth = truth
    alone = _finish(cvm.comparison_job(vm.comparison_request(True, cvm.PAIRS_DRAWN)))[1]
    assert alone.layer == "lower" and len(alone.layers) == 2
    assert "reference atom" in alone.text  # the drawn pairs
    plain = cvm.Comparison(alone.metrics, alone.text)
    assert cvm.layer_table(plain) is None


def test_unit_cell_table_of_the_selected_range(computed):
    _, results, _ = computed
    result = results["top"]
    uc = result.data.unit_cell_averages
    table = cvm.unit_cell_table(result)
    assert table.headers == ("class", "shell", "G_xx", "G_yy", "G_xy", "σ")
    assert len(table.rows) == uc.n_classes == 11  # 2 self, 3 nearest, 6 second neighbours
    assert [int(row[1]) for row in table.rows] == uc.shell.tolist()
    assert table.rows[0][0] == "(0,0) B→B" and table.rows[0][-1] == "self"
    for row, block, err in zip(table.rows, uc.blocks_A2, uc.stderr_A2):
        xx, xx_err = (float(v) for v in row[2].split("±"))
        assert xx == pytest.approx(1e4 * block[1, 1], abs=0.006)
        assert xx_err == pytest.approx(1e4 * err[1, 1], abs=0.006)
        yy = float(row[3].split("±")[0])
        assert yy == pytest.approx(1e4 * block[0, 0], abs=0.006)
        xy = float(row[4].split("±")[0])
        assert xy == pytest.approx(1e4 * block[1, 0], abs=0.006)
    caption = cvm.unit_cell_caption(result)
    assert caption.startswith("z-range top: G in pm² ± error") and "B → N bond" in caption
    assert "(shells at 1.45, 2.50 Å)" in caption
