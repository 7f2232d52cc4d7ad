"""The binning floor: a movie within a model's training widths is not binned below its narrowest.

    python benchmarks/binning_floor.py [--out benchmarks/results/binning_floor.md]

`reconstruct.movie_binning` bins the frames for the network where 30-60 %
of the fitted PSF widths are beyond its training's widest, but never brings
the median width below `BINNED_NARROWEST_SHARE` (0.8) of its narrowest.
The shipped `dsir` model was trained on 200-300 nm PSFs (2.0-3.0 px of 100
nm): on movies of 250-340 nm PSFs the fits' 70th percentile passes 3 px,
which asks for 2x2 binning (1.5 px as the network would see them): the
table shows what that would cost, and whether the floor (rather than the
crowding guard, `psf.network_binning`) kept the frames unbinned. Sets:
64x64 px of 100 nm, 1 emitter/um^2, 200-5,000 photons on 35 per px, 40
frames each (seeds 5, 6); Jaccard, precision and RMSE at 250 nm for the
automatic choice and for each binning forced; the `default` model's choice
alongside (its training: 1.7-3.7 px; nothing to floor).
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

from _machine import describe

from napari_dsir.evaluate import evaluate
from napari_dsir.run import reconstruct
from napari_dsir.simulate import SimulationConfig, simulate

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "binning_floor.md")
    args = ap.parse_args()
    rows = [
        "# The binning floor (`python benchmarks/binning_floor.py`)", "",
        f"Run on {date.today()} on {describe()}; see the script's docstring. Cells: Jaccard / precision / RMSE "
        "(nm) at 250 nm.", "",
        "| set | model | median / 70th percentile FWHM fitted (nm) | auto: binning | auto | binning 1 | binning 2 |",
        "|---|---|---|---|---|---|---|",
    ]
    for fwhm, seed in (((260.0, 330.0), 5), ((250.0, 340.0), 6)):
        cfg = SimulationConfig(frame_size=(64, 64), density=1.0, fwhm=fwhm, photons=(200.0, 5000.0),
                               background=35.0, base_level=100.0)
        frames, gt = simulate(40, cfg, seed=seed)
        for model in ("dsir", "default"):
            cells, auto = [], None
            for b in (None, 1, 2):
                res = reconstruct(frames, model, pixel_size=100.0, localize=True, binning=b, progress=lambda p: None)
                m = evaluate(gt, res.localizations, 250.0)
                cells.append(f"{m.jaccard:.3f} / {m.precision:.3f} / {m.rmse:.1f}")
                if b is None:
                    auto = res.info
            floor = " (2 before the floor)" if auto.get("binning_floor") else ""
            rows.append(f"| FWHM {fwhm[0]:g}-{fwhm[1]:g} nm | {model} | {auto['psf_fwhm_nm']:.0f} / "
                        f"{auto['psf_fwhm_q70_nm']:.0f} | {auto['binning']}{floor} | " + " | ".join(cells) + " |")
    args.out.write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
