"""Make docs/napari.png: napari with the Bundled Tubes HD stack, its DSIR
reconstruction and the localizations, zoomed in.

Run in a real (X) window, e.g. headless under Xvfb:

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshot.py

The stack is ../shared/data/bundled_tubes_hd/sequence beside the repository
(or give its path). The shipped default model is used; without it the
original DSIR weights (../shared/data/dsir_original/autoencoder_model.pt).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stack", nargs="?", default=SHARED / "bundled_tubes_hd" / "sequence", type=Path,
                    help="TIFF stack or folder of TIFFs (default: Bundled Tubes HD from ../shared/data)")
    ap.add_argument("--out", default=HERE / "napari.png", type=Path)
    ap.add_argument("--model", default=None, help="model file (default: shipped model, else legacy)")
    ap.add_argument("--threshold", type=float, default=None,
                    help="localization threshold (default: the model's calibrated one)")
    ap.add_argument("--frame", type=int, default=180, help="frame shown with its localizations")
    args = ap.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_dsir._qt import _widgets
    from napari_dsir.model import default_model_path

    if not args.stack.exists():
        print(f"stack not found: {args.stack}", file=sys.stderr)
        return 2

    viewer = napari.Viewer(title="napari-dsir", show=True)
    viewer.window.resize(1500, 950)
    (camera,) = viewer.open(args.stack, plugin="napari-dsir")
    _, gt = viewer.window.add_plugin_dock_widget("napari-dsir", "DSIR Ground Truth")
    rec_dock, rec = viewer.window.add_plugin_dock_widget("napari-dsir", "DSIR Reconstruct", tabify=True)
    rec_dock.raise_()

    legacy = SHARED / "dsir_original" / "autoencoder_model.pt"
    if args.model:
        rec.model_combo.setCurrentIndex(_widgets.MODEL_FILE)
        rec.model_path.setText(str(args.model))
    elif not default_model_path().is_file():
        print(f"note: no shipped default model ({default_model_path()}); "
              f"using the original DSIR weights {legacy}")
        rec.model_combo.setCurrentIndex(_widgets.MODEL_LEGACY)
        rec.model_path.setText(str(legacy))
    if args.threshold is not None:
        rec.model_threshold.setChecked(False)
        rec.threshold.setValue(args.threshold)
    # else: "use the model's threshold" (the default), the calibrated value
    # stored with the weights (napari_dsir.localize.params_for)
    rec.out_locs.setChecked(True)
    rec.batch_spin.setValue(16)

    t0 = time.time()
    worker = rec.run()
    if worker is None:
        print("the reconstruction did not start", file=sys.stderr)
        return 1
    app = QApplication.instance()
    while rec.worker is not None:
        app.processEvents()
        time.sleep(0.02)
    print(f"reconstruction: {time.time() - t0:.0f} s; {rec.status.text()}")
    name = camera.name
    if f"{name} DSIR" not in viewer.layers:
        print("no reconstruction layer (see the messages above)", file=sys.stderr)
        return 1

    pts = viewer.layers[f"{name} DSIR localizations"]
    camera.opacity = 0.6
    pts.size = 60.0
    # show a frame: its camera image, the summed reconstruction and that
    # frame's localizations; zoom on the centre of the field
    viewer.dims.set_point(0, min(args.frame, camera.data.shape[0] - 1))
    viewer.layers.selection.active = pts
    h, w = camera.data.shape[-2:]
    p = camera.metadata["pixel_size"]
    scene = getattr(viewer, "scene", None)  # napari >= 0.9
    camera_model = scene.camera if scene is not None else viewer.camera
    viewer.reset_view()
    camera_model.center = (h * p / 2, w * p / 2)
    camera_model.zoom *= 1.8
    scale_bar = viewer.canvas.overlays.scale_bar if hasattr(viewer, "canvas") else viewer.scale_bar
    scale_bar.visible = True
    for _ in range(20):
        app.processEvents()
        time.sleep(0.05)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.out), canvas_only=False)
    print(f"wrote {args.out}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
