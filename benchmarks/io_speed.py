"""I/O speed: compressed TIFF stacks read one frame at a time, and 200k-row
localization tables (ThunderSTORM CSV, Picasso HDF5) read and written.

In one process, medians of ``--repeats`` runs:
- zlib-compressed stacks of 500/1000/2000/4000 frames of 64x64 (uint16,
  camera-like Poisson noise) read frame by frame through `open_stack`
  (one open file per Stack), against the former page-by-page reader, which
  reopened the file and parsed all its pages on every read (emulated here
  with tifffile exactly as it did, on a sample of frames);
- 200,000 localizations written and read as CSV (frame, x, y, intensity; and
  with every column) and as Picasso HDF5 + YAML; the former, row-by-row CSV
  code is loaded from git (``--before``) when it is available.
Prints a markdown report (the machine included) and writes it to ``--out``.

    python benchmarks/io_speed.py [--repeats 3] [--out benchmarks/results/io_speed.md]
        [--picasso-python /tmp/picasso-venv/bin/python]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from _machine import describe, median_seconds

from napari_dsir.io import open_stack, read_localizations, write_localizations
from napari_dsir.locs import Localizations

ROOT = Path(__file__).resolve().parents[1]
SIZES = (500, 1000, 2000, 4000)
N_ROWS = 200_000


def _make_stack(path: Path, n: int, rng) -> None:
    frames = rng.poisson(100.0, size=(n, 64, 64)).astype(np.uint16)
    tifffile.imwrite(path, frames, compression="zlib", photometric="minisblack")


def _reopen_read(path: Path, i: int) -> np.ndarray:
    """The former reader: open the file, index its pages, read one page."""
    with tifffile.TiffFile(path) as t:
        return t.series[0].pages[i].asarray()


def bench_stacks(tmp: Path, repeats: int) -> list[str]:
    rng = np.random.default_rng(0)
    rows = []
    for n in SIZES:
        p = tmp / f"zlib_{n}.tif"
        _make_stack(p, n, rng)
        firsts, per_frame, totals = [], [], []
        for _ in range(repeats):
            with open_stack(p) as s:
                t0 = time.perf_counter()
                s[0]
                t1 = time.perf_counter()
                for i in range(1, n):
                    s[i]
                t2 = time.perf_counter()
            firsts.append(t1 - t0)
            per_frame.append((t2 - t1) / (n - 1))
            totals.append(t2 - t0)
        sample = np.linspace(0, n - 1, 10).astype(int)
        before = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for i in sample:
                _reopen_read(p, int(i))
            before.append((time.perf_counter() - t0) / len(sample))
        b = statistics.median(before)
        rows.append(
            f"| {n} | {b * 1e3:.1f} | {b * n:.1f} | {statistics.median(firsts) * 1e3:.1f} | "
            f"{statistics.median(per_frame) * 1e3:.3f} | {statistics.median(totals):.2f} | "
            f"{b * n / statistics.median(totals):.0f}x |"
        )
        p.unlink()
    return rows


def _old_tables(commit: str):
    """The CSV module as it was at ``commit`` (row-by-row), or None."""
    try:
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:src/napari_dsir/io/tables.py"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    src = (src.replace("from ..errors", "from napari_dsir.errors").replace("from ..locs", "from napari_dsir.locs")
           .replace("from .files", "from napari_dsir.io.files").replace("from .stacks", "from napari_dsir.io.stacks"))
    path = Path(tempfile.mkdtemp()) / "old_tables.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("old_tables", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def bench_tables(tmp: Path, repeats: int, before: str) -> list[str]:
    rng = np.random.default_rng(1)
    n = N_ROWS
    basic = Localizations(rng.integers(0, 20_000, n), rng.uniform(0, 12_800, n), rng.uniform(0, 12_800, n),
                          intensity=rng.uniform(0, 10, n))
    full = Localizations(basic.frame, basic.x, basic.y, intensity=basic.intensity,
                         photons=rng.uniform(100, 5000, n), background=rng.uniform(1, 50, n),
                         sigma=rng.uniform(80, 200, n), uncertainty=rng.uniform(2, 30, n))
    rows = []
    old = _old_tables(before)
    csv_path = tmp / "l.csv"
    if old is not None:
        w = median_seconds(lambda: old.write_localizations(csv_path, basic, overwrite=True), repeats)
        r = median_seconds(lambda: old.read_localizations(csv_path), repeats)
        rows.append(f"| CSV frame, x, y, intensity: before ({before}, row by row) | {w:.2f} | {r:.2f} | "
                    f"{csv_path.stat().st_size / 1e6:.1f} |")
    w = median_seconds(lambda: write_localizations(csv_path, basic, overwrite=True), repeats)
    r = median_seconds(lambda: read_localizations(csv_path), repeats)
    rows.append(f"| CSV frame, x, y, intensity: now (vectorised) | {w:.2f} | {r:.2f} | "
                f"{csv_path.stat().st_size / 1e6:.1f} |")
    w = median_seconds(lambda: write_localizations(csv_path, full, overwrite=True), repeats)
    r = median_seconds(lambda: read_localizations(csv_path), repeats)
    rows.append(f"| CSV, every ThunderSTORM column (10 columns) | {w:.2f} | {r:.2f} | "
                f"{csv_path.stat().st_size / 1e6:.1f} |")
    h5 = tmp / "l.hdf5"
    kw = dict(pixel_size=100.0, frame_shape=(128, 128), overwrite=True)
    w = median_seconds(lambda: write_localizations(h5, full, **kw), repeats)
    r = median_seconds(lambda: read_localizations(h5), repeats)
    rows.append(f"| Picasso HDF5 + YAML, every column | {w:.2f} | {r:.2f} | {h5.stat().st_size / 1e6:.1f} |")
    return rows


PICASSO_CHECK = """
import sys, picasso, picasso.io as pio
locs, info = pio.load_locs(sys.argv[1])
print(f"picasso {picasso.__version__}: load_locs read {len(locs)} of {sys.argv[2]} localizations, "
      f"columns {', '.join(locs.columns)}; info steps: {[d.get('Generated by', 'movie') for d in info]}")
"""


def check_picasso(tmp: Path, python: str) -> str:
    """Load a file we wrote with Picasso's own `picasso.io.load_locs`, run by
    ``python`` (a separate venv, benchmarks/requirements-picasso.txt)."""
    rng = np.random.default_rng(2)
    n = 1000
    locs = Localizations(rng.integers(0, 100, n), rng.uniform(50, 6350, n), rng.uniform(50, 6350, n),
                         intensity=rng.uniform(0, 5, n), photons=rng.uniform(100, 5000, n),
                         background=rng.uniform(1, 50, n), sigma=rng.uniform(80, 200, n),
                         uncertainty=rng.uniform(2, 30, n))
    p = write_localizations(tmp / "check.hdf5", locs, pixel_size=100.0, frame_shape=(64, 64), n_frames=100,
                            metadata={"camera": {"baseline": 100.0, "sensitivity": 0.45, "em_gain": 1.0}})
    try:
        out = subprocess.run([python, "-c", PICASSO_CHECK, str(p), str(n)], capture_output=True, text=True,
                             timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"could not run {python}: {e}"
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("picasso")]
    return lines[-1] if out.returncode == 0 and lines else f"failed: {out.stderr.strip()[-500:]}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--before", default="782eccf", help="git commit of the former CSV code (row by row)")
    ap.add_argument("--picasso-python", help="python of a venv with picassosr (requirements-picasso.txt): "
                    "check that picasso.io.load_locs reads our HDF5 + YAML")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "io_speed.md")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        stack_rows = bench_stacks(tmp, args.repeats)
        table_rows = bench_tables(tmp, args.repeats, args.before)
        picasso = check_picasso(tmp, args.picasso_python) if args.picasso_python else None
    today = datetime.date.today().isoformat()
    flags = f"--repeats {args.repeats}" + (f" --picasso-python {args.picasso_python}" if args.picasso_python else "")
    lines = [
        "# I/O speed",
        "",
        f"Run on {today} with `python benchmarks/io_speed.py {flags}` on {describe()}, "
        f"Python {sys.version.split()[0]}, numpy {np.__version__}, tifffile {tifffile.__version__}; "
        f"medians of {args.repeats} runs in one process.",
        "",
        "## zlib-compressed stacks (64x64 uint16) read one frame at a time",
        "",
        "Before: every read reopened the file and indexed all its pages (timed on 10 frames spread over "
        "the stack; the total is that times the frame count). Now: one open file per Stack, its pages "
        "indexed on the first read.",
        "",
        "| frames | before: ms per frame | before: s for all frames | now: first read (indexes pages), ms "
        "| now: ms per frame after | now: s for all frames | speed-up, all frames |",
        "|---|---|---|---|---|---|---|",
        *stack_rows,
        "",
        f"## Localization tables, {N_ROWS:,} rows",
        "",
        "| table | write, s | read, s | file, MB |",
        "|---|---|---|---|",
        *table_rows,
        "",
    ]
    if picasso:
        lines += [
            "## Picasso compatibility",
            "",
            "1,000 localizations with every column written by `write_localizations(..., 'check.hdf5', "
            "pixel_size=100, frame_shape=(64, 64))`, loaded by Picasso's own `picasso.io.load_locs` "
            "(which drops rows with x or y < 0 px, i.e. within half a pixel of the top/left edge, and "
            "rows with NaN):",
            "",
            f"    {picasso}",
            "",
        ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
