"""Make docs/napari.png: napari with the plugin's sample data reconstructed by
DSIR Reconstruct and its localizations scored by DSIR Ground Truth's Compare.

Run in a real (X) window, e.g. headless under Xvfb:

    xvfb-run -a -s "-screen 0 1920x1200x24" python docs/make_screenshot.py

The widgets are driven as a user would (fields set, Run, Compare); the run
goes through the widgets' synchronous mode so the script needs no event loop
of its own. The shipped default model is used unless --model is given.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=HERE / "napari.png", type=Path)
    ap.add_argument("--model", default=None, help="a napari-dsir checkpoint (default: the shipped model)")
    ap.add_argument("--frame", type=int, default=60, help="frame shown with its localizations")
    args = ap.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_dsir._qt.ground_truth import GroundTruthWidget
    from napari_dsir._qt.models import MODEL_FILE

    viewer = napari.Viewer(title="napari-dsir", show=True)
    viewer.window.resize(1880, 1150)
    camera, truth = viewer.open_sample("napari-dsir", "sample_stack")
    _, rec = viewer.window.add_plugin_dock_widget("napari-dsir", "DSIR Reconstruct")
    gt = GroundTruthWidget(viewer)  # on the left, so both widgets show
    gt.synchronous = True  # (Compare returns its metrics)
    gt_dock = viewer.window.add_dock_widget(gt, name="DSIR Ground Truth", area="left")
    if args.model:
        rec.model.value = MODEL_FILE
        rec.model_file.value = args.model
    rec.out_locs.value = True  # the model's calibrated threshold ("use the model's threshold")
    rec.camera.set_camera.value = True  # the sample's camera: base level 100 ADU, gain 1
    rec.synchronous = True
    t0 = time.time()
    rec.run()
    print(f"reconstruction: {time.time() - t0:.0f} s; {rec.status.value}")
    name = camera.name
    if f"{name} DSIR localizations" not in viewer.layers:
        print("no reconstruction layer (see the messages above)", file=sys.stderr)
        return 1
    # Compare: the choosers pick the localizations and the ground truth by themselves
    m = gt.compare()
    if m is None:
        print("Compare failed (see the messages above)", file=sys.stderr)
        return 1
    print(f"Compare: Jaccard {m.jaccard:.3f}, recall {m.recall:.3f}, precision {m.precision:.3f}, "
          f"RMSE {m.rmse:.1f} nm")

    pts = viewer.layers[f"{name} DSIR localizations"]
    camera.opacity = 0.5
    pts.size, truth.size = 90.0, 150.0
    viewer.layers[f"{name} DSIR"].visible = True
    viewer.dims.set_point(0, min(args.frame, camera.data.shape[0] - 1))
    viewer.layers.selection.active = pts
    h, w = camera.data.shape[-2:]
    p = camera.metadata["pixel_size"]
    scene = getattr(viewer, "scene", None)  # napari >= 0.9
    camera_model = scene.camera if scene is not None else viewer.camera
    scale_bar = viewer.canvas.overlays.scale_bar if hasattr(viewer, "canvas") else viewer.scale_bar
    scale_bar.visible = True
    app = QApplication.instance()
    app.processEvents()
    # the Ground Truth dock as tall as its form (it scrolls, and the left column would squeeze it)
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QScrollArea

    form = gt.native.findChild(QScrollArea).widget()
    viewer.window._qt_window.resizeDocks([gt_dock], [form.sizeHint().height() + 120], Qt.Orientation.Vertical)
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):  # (over the scale bar)
        toast.close()
    for _ in range(10):  # the canvas at its final size, then the view fitted to it
        app.processEvents()
        time.sleep(0.05)
    viewer.reset_view()
    camera_model.center = (h * p / 2, w * p / 2)
    for _ in range(30):
        app.processEvents()
        time.sleep(0.05)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.out), canvas_only=False)
    print(f"wrote {args.out}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
