"""Picasso's camera configuration, read by napari-dsir and by Picasso itself.

Writes Micro-Manager-like movies (the image metadata in TIFF tag 51123, in
Micro-Manager 1.4's flat layout and 2.0's {"PropVal": ...} one) for three
cameras of Picasso's own ``config_template.yaml`` (an Andor iXon EMCCD,
an Andor Zyla and a Hamamatsu sCMOS), reads each with napari-dsir
(`napari_dsir.io.open_stack`, then `Camera.from_yaml` on the template) and
with Picasso (`picasso.io.load_movie`, the movie's ``camera_parameters``
and the sensitivity looked up as Picasso Localize's dialog does), and
tabulates the baseline, sensitivity and EM gain each gives.

    python benchmarks/picasso_camera.py --picasso-python /tmp/picvenv/bin/python

(``/tmp/picvenv``: a venv made with ``benchmarks/requirements-picasso.txt``.)
Writes benchmarks/results/picasso_camera.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import tifffile
import yaml
from _machine import describe, write_report

from napari_dsir.camera import Camera
from napari_dsir.errors import DSIRError
from napari_dsir.io import open_stack

#: run in Picasso's venv: the camera Picasso finds for a movie, and its settings
PICASSO_READ = r"""
import json, sys, yaml
import picasso
from picasso import io as pio
movie, info = pio.load_movie(sys.argv[1])
config = yaml.safe_load(open(sys.argv[2]))
params = movie.camera_parameters(config)
camera = info[0].get("Camera")
entry = config["Cameras"].get(camera, {})
sensitivity = entry.get("Sensitivity")
for category in entry.get("Sensitivity Categories", []):  # as Picasso Localize's update_sensitivity
    sensitivity = sensitivity[params["Sensitivity"][category]]
gain = params.get("gain", [1])
print(json.dumps({"version": picasso.__version__, "camera": camera, "baseline": entry.get("Baseline"),
                  "sensitivity": sensitivity, "em_gain": gain[0] if isinstance(gain, list) else gain}))
"""

IXON = "Andor iXon X-9603"
ZYLA = "Andor Zyla 4.2 Plus"
#: (case, Micro-Manager's camera properties, whether the config gets an EM switch for the iXon)
CASES = [
    ("iXon, EM amplifier, 10 MHz, pre-amp gain 2, EM gain 200",
     {"Camera": IXON, f"{IXON}-Gain": "200", f"{IXON}-Output_Amplifier": "Electron Multiplying",
      f"{IXON}-ReadoutMode": "10.000 MHz", f"{IXON}-Pre-Amp-Gain": "Gain 2"}, True),
    ("iXon, conventional amplifier, 1 MHz, pre-amp gain 3 (EM gain property 200)",
     {"Camera": IXON, f"{IXON}-Gain": "200", f"{IXON}-Output_Amplifier": "Conventional",
      f"{IXON}-ReadoutMode": "1.000 MHz", f"{IXON}-Pre-Amp-Gain": "Gain 3"}, True),
    ("iXon, EM amplifier, EM gain 200, the template's entry (no EM switch)",
     {"Camera": IXON, f"{IXON}-Gain": "200", f"{IXON}-Output_Amplifier": "Electron Multiplying",
      f"{IXON}-ReadoutMode": "17.000 MHz", f"{IXON}-Pre-Amp-Gain": "Gain 1"}, False),
    ("Zyla 4.2 Plus, 200 MHz, 12-bit (low noise)",
     {"Camera": ZYLA, f"{ZYLA}-PixelReadoutRate": "200 MHz - lowest noise",
      f"{ZYLA}-Sensitivity/DynamicRange": "12-bit (low noise)"}, True),
    ("Hamamatsu (DCAM)", {"Camera": "HamamatsuHam_DCAM", "HamamatsuHam_DCAM-Binning": "1x1"}, True),
]


def _movie(path: Path, props: dict, layout: str) -> None:
    meta = props if layout == "1.4" else {k: {"PropVal": v, "PropType": "String"} for k, v in props.items()}
    frames = np.full((3, 16, 16), 300, np.uint16)
    tifffile.imwrite(path, frames, photometric="minisblack", extratags=[(51123, "s", 0, json.dumps(meta), False)])


def _ours(movie: Path, config: Path) -> str:
    try:
        c = Camera.from_yaml(config, open_stack(movie).camera_metadata)
    except DSIRError as e:
        return f"error: {e}"
    return f"{c.baseline:g} / {c.sensitivity:g} / {c.em_gain:g}"


def _picasso(python: str, movie: Path, config: Path) -> tuple[str, str]:
    out = subprocess.run([python, "-c", PICASSO_READ, str(movie), str(config)], capture_output=True, text=True,
                         timeout=300)
    if out.returncode != 0:
        return f"failed: {out.stderr.strip().splitlines()[-1]}", ""
    d = json.loads(out.stdout.strip().splitlines()[-1])
    return f"{d['baseline']:g} / {d['sensitivity']:g} / {d['em_gain']:g}", d["version"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--picasso-python", required=True, help="python of a venv with picassosr")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "picasso_camera.md")
    args = ap.parse_args(argv)
    find = subprocess.run([args.picasso_python, "-c", "import picasso, os; print(os.path.dirname(picasso.__file__))"],
                          capture_output=True, text=True, check=True)
    template = yaml.safe_load((Path(find.stdout.strip()) / "config_template.yaml").read_text())
    rows, version = [], ""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for with_switch in (True, False):
            config = dict(template, Cameras=dict(template["Cameras"]))
            if with_switch:  # Picasso reads an EM gain only behind an EM switch
                config["Cameras"][IXON] = dict(config["Cameras"][IXON], **{"EM Switch Property": {
                    "Name": "Output_Amplifier", True: "Electron Multiplying", False: "Conventional"}})
            (tmp / f"config_{with_switch}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        for case, props, with_switch in CASES:
            config = tmp / f"config_{with_switch}.yaml"
            for layout in ("1.4", "2.0"):
                movie = tmp / f"movie_{len(rows)}.tif"
                _movie(movie, props, layout)
                theirs, version = _picasso(args.picasso_python, movie, config)
                rows.append(f"| {case} | {layout} | {_ours(movie, config)} | {theirs} |")
                print(rows[-1], flush=True)
    head = [
        "# Picasso's camera configuration: napari-dsir and Picasso on the same movies",
        "",
        f"Run on {date.today()} with `python benchmarks/picasso_camera.py` on {describe()}.",
        "",
        f"Picasso {version}'s own `config_template.yaml`; movies with Micro-Manager's image metadata (tag 51123) "
        "in its 1.4 (flat) and 2.0 (PropVal) layouts. Settings as baseline (ADU) / sensitivity (e-/ADU) / EM gain. "
        "The iXon rows but the last use the template with an EM switch added to the iXon (`Output_Amplifier`), "
        "without which Picasso's code reads no EM gain (its documentation says the gain property is read).",
        "",
        "| movie | Micro-Manager layout | napari-dsir | Picasso |",
        "|---|---|---|---|",
    ]
    write_report(args.out, head + rows + [""])
    return 0


if __name__ == "__main__":
    sys.exit(main())
