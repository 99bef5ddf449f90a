"""Default settings on noisy static hBN (issue 13, must-show 4).

``caviar simulate hbn-static`` noise-free and with Poisson noise at each ``--doses`` (e/Å²,
same seed, so the same specimen), each reconstructed by ``caviar reconstruct DATA --out R``
with no other option (the defaults a user gets: the recommended recipe, ``loss: auto``, which
picks Poisson for the counts, held-out positions and their stopping rule). Prints a markdown
row per dose: the loss chosen, iterations run, the phase correlation of the projected phase
(mean over the states) with the truth on the truth's grid (``phase_truth.py``) and its
difference from the noise-free run.

    PYTHONPATH=. python benchmarks/bench_noisy_static.py [--doses 1e5 1e6] [--scan 16]
        [--doc docs/benchmarks/noisy-static.md]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from _doc import write_page
from bench_calibration import caviar
from phase_truth import phase_correlation, projected_phase, read_truth_phase

from caviar_napari.io.reconstruction import load_reconstruction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--doses", type=float, nargs="+", default=[1e5, 1e6])
    parser.add_argument("--scan", type=int, default=16)
    parser.add_argument("--doc", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args()
    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    n = str(args.scan)
    sim = ["--scan", n, n, "--overwrite"]
    say(f"hBN static, {n}×{n} scan; `caviar reconstruct DATA --out R` with the defaults\n")
    say("| data | loss (auto) | iterations | phase corr. | Δ vs noise-free | time |")
    say("|---|---|---|---|---|---|")
    reference = None
    with tempfile.TemporaryDirectory() as tmp:
        for dose in (None, *args.doses):
            data, out = Path(tmp) / "data.h5", Path(tmp) / "rec.h5"
            noise = [] if dose is None else ["--dose-per-A2", f"{dose:g}"]
            caviar("simulate", "hbn-static", "--out", str(data), *sim, *noise)
            t0 = time.perf_counter()
            caviar("reconstruct", str(data), "--out", str(out), "--overwrite")
            wall = time.perf_counter() - t0
            state = load_reconstruction(out)
            r = phase_correlation(
                projected_phase(state.object),
                state.object_origin_A,
                state.pixel_size_A,
                state.scan_positions_A,
                read_truth_phase(data),
            )
            reference = r if reference is None else reference
            label = "noise-free" if dose is None else f"{dose:.0e} e/Å²"
            loss = json.dumps(state.diagnostics.get("loss", state.config.loss))
            say(f"| {label} | {loss} | {state.iteration} | {r:.4f} | {r - reference:+.4f} "
                f"| {wall:.0f} s |")  # fmt: skip
    if args.doc is not None:
        write_page(
            args.doc,
            "Default settings on noisy static hBN (issue 13)",
            __file__,
            __doc__,
            lines,
        )


if __name__ == "__main__":
    main()
