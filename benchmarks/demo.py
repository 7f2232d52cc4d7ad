"""The README's quick start and post-processing lines, run as a new user runs them.

    python benchmarks/demo.py [--repeats 3] [--out benchmarks/results/demo.md]

Runs, in a temporary folder, each as its own process (start-up included):

- ``dsir demo`` (the default model on the shipped sample: 120 frames,
  3 emitters/um^2), ``--repeats`` times; the figures it prints against the
  sample's ground truth and the median wall time;
- ``dsir demo -o demo``, then ``dsir resolution`` and ``dsir drift
  --segments 10`` on its localizations, as the README's "From a table to a
  publishable image" block does; the FRC, NeNA and drift figures they print.

The README quotes these figures; this script is where they come from.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from _machine import describe

HERE = Path(__file__).resolve().parent


def dsir(*args: str, cwd: Path) -> tuple[str, float]:
    """(stdout + stderr, wall seconds) of ``dsir ARGS`` as a process."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "napari_dsir.cli", *args], cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"dsir {' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
    return out.stdout + out.stderr, wall


def grab(pattern: str, text: str) -> str:
    m = re.search(pattern, text)
    return m.group(1) if m else "(not printed)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "demo.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        times, text = [], ""
        for k in range(args.repeats):
            text, wall = dsir("demo", "-o", f"run{k}", cwd=tmp)
            times.append(wall)
        line = grab(r"(vs ground truth, radius 250 nm: [^\n]+)", text)
        dsir("demo", "-o", "demo", cwd=tmp)
        table = "demo/sample_localizations.csv"
        res, _ = dsir("resolution", table, cwd=tmp)
        drift, _ = dsir("drift", table, "-o", "corrected.csv", "--segments", "10", cwd=tmp)
    frc_nm, nena_nm = grab(r"FRC resolution\s+(\S+ nm)", res), grab(r"NeNA precision\s+(\S+ nm)", res)
    span = grab(r"drift spans (\S+ nm over \d+ frames)", drift)
    rows = [
        "# The README's quick start, run as a user runs it (`python benchmarks/demo.py`)",
        "",
        f"Run on {date.today()} on {describe()}; each command a whole process (start-up included).",
        "",
        "| command | printed |",
        "|---|---|",
        f"| `dsir demo` | `{line}` |",
        f"| `dsir demo`, wall time | median {statistics.median(times):.1f} s of {len(times)} "
        f"({', '.join(f'{t:.1f}' for t in times)}) |",
        f"| `dsir resolution demo/sample_localizations.csv` | FRC resolution {frc_nm}, NeNA precision {nena_nm} |",
        f"| `dsir drift demo/sample_localizations.csv -o corrected.csv --segments 10` | drift spans {span} |",
    ]
    args.out.write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
