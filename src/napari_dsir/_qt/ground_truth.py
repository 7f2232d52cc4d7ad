"""Plugins > DSIR Ground Truth: load a positions file over an image, and
Compare a localizations layer with a ground-truth layer (Jaccard, recall,
precision, RMSE; matched points green, false positives red, misses magenta).

Positions are compared in nm. A points layer made by this plugin holds nm
(metadata ``units`` "nm"); any other is read through its world coordinates:
nm when its units say so, else converted with the chosen image's pixel size
(the layer is taken to be in that image's world, e.g. pixels).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton
from napari.layers import Image, Points

from ..errors import DSIRError
from ..io.tables import read_positions
from ..layers import Geometry, locs_from_layer, nm_per_world_unit, points_layer_data
from ..locs import Localizations
from ..run import resolve_pixel_size
from .common import (
    camera_pixel_size,
    colour_by_label,
    kind_of,
    layer_choices,
    layer_units,
    message_of,
    notify,
    put_layers,
    run_job,
    same_layer,
    scroll_in_dock,
    when_closed,
    wrap,
)

WIDGET = "DSIR Ground Truth"
SYMBOLS = ("ring", "disc", "cross", "x", "square", "diamond", "triangle_up", "star")
COLOURS = ("cyan", "magenta", "yellow", "lime", "red", "orange", "white", "dodgerblue")
TP_COLOUR, FP_COLOUR, FN_COLOUR = "lime", "red", "magenta"


def image_geometry(image, note) -> Geometry:
    """Where ``image``'s pixels lie; its pixel size resolved as for a run
    (``note`` is called with a message when 100 nm is assumed)."""
    px = resolve_pixel_size(None, camera_pixel_size(image))
    if px.assumed:
        note(f"'{image.name}' states no pixel size; assuming {px.nm:g} nm")
    return Geometry.from_layer(image.scale, image.translate, px.nm)


def in_nm(layer) -> bool:
    """Whether a points layer's positions are nm without an image's help."""
    return (layer.metadata or {}).get("units") == "nm" or nm_per_world_unit(getattr(layer, "units", None)) is not None


def points_nm(layer, geometry: Geometry | None) -> Localizations:
    """A points layer's positions (nm, corner origin; `layers.locs_from_layer`),
    one in pixels converted by ``geometry``, its image's."""
    if geometry is None and not in_nm(layer):
        raise DSIRError(f"'{layer.name}' is in pixels (its world units are not nm); choose the image it "
                        "belongs to as Image, so that its pixel size converts it to nm")
    return locs_from_layer(layer.data, metadata=layer.metadata, scale=layer.scale, translate=layer.translate,
                           units=getattr(layer, "units", None), name=layer.name, geometry=geometry)


class GroundTruthWidget(Container):
    """Overlay ground-truth positions and compare localizations with them."""

    def __init__(self, napari_viewer):
        self.viewer = napari_viewer
        self.metrics = None
        self.synchronous = False  # Compare's matching in a worker thread (tests: here)
        self.worker = None
        # the camera movie: not the sum image (one frame of its own pixel size: a table in camera px was
        # drawn at 1/8 and all its frames but the first left out), the per-frame stack of a frame range,
        # whose frames are counted from its start, nor a rendering (all overlay the movie's positions)
        self.image = ComboBox(label="Image", choices=lambda _w: layer_choices(
                                  self.viewer, Image, exclude=("dsir_sum", "dsir_frames", "render")),
                              tooltip="The image the positions belong to (pixel size, placement)")
        self.positions = FileEdit(label="Positions", mode="r", filter="Positions (*.csv *.txt *.tsv *.hdf5 *.h5)",
                                  tooltip="ThunderSTORM CSV, EPFL activations, frame,x,y (nm) or Picasso HDF5")
        self.symbol = ComboBox(label="Symbol", choices=SYMBOLS, value="ring")
        self.size = FloatSpinBox(label="Size (nm)", min=1.0, max=1e5, value=80.0)
        self.colour = ComboBox(label="Colour", choices=COLOURS, value="cyan")
        self.load_button = PushButton(text="Load ground truth")
        self.localizations = ComboBox(
            label="Localizations", tooltip="The localizations to score, e.g. '<image> DSIR localizations'",
            choices=lambda _w: layer_choices(self.viewer, Points, prefer="localizations", avoid="ground_truth"))
        self.ground_truth = ComboBox(
            label="Ground truth", tooltip="The true positions, e.g. '<image> ground truth'",
            choices=lambda _w: layer_choices(self.viewer, Points, prefer="ground_truth", avoid="localizations"))
        self.radius = FloatSpinBox(label="Radius (nm)", min=1.0, max=1e4, value=250.0,
                                   tooltip="Matching radius (one-to-one per frame, Hungarian)")
        self.compare_button = PushButton(text="Compare")
        self.result = Label(value="")
        super().__init__(widgets=[
            self.image, self.positions, self.symbol, self.size, self.colour, self.load_button,
            self.localizations, self.ground_truth, self.radius, self.compare_button, self.result,
        ])
        wrap(self.result)
        scroll_in_dock(self)
        when_closed(self)  # (a job's result then not shown)
        self.load_button.changed.connect(lambda *_: self.load())
        self.compare_button.changed.connect(lambda *_: self.compare())
        for w in (self.symbol, self.size, self.colour):
            w.changed.connect(self._restyle)
        self._sizing = False  # the size set for another image, not by the user
        self.image.changed.connect(self._on_image)
        self.reset_choices()
        self._on_image()

    def reset_choices(self, *_):
        """Refresh the choosers; a chooser holding a layer of the other role
        (or none) moves to one of its own when there is one, so Compare
        never defaults to scoring the ground truth against itself."""
        super().reset_choices()
        for chooser, own, other in ((self.localizations, "localizations", "ground_truth"),
                                    (self.ground_truth, "ground_truth", "localizations")):
            options = [v for v in chooser.choices if kind_of(v) == own]
            if options and (chooser.value is None or kind_of(chooser.value) == other):
                chooser.value = options[0]

    def _on_image(self, *_):
        image = self.image.value
        px = None if image is None else camera_pixel_size(image)
        if px is not None:  # the size the next load draws with; a layer already drawn keeps its style
            self._sizing = True
            try:
                self.size.value = 0.8 * px
            finally:
                self._sizing = False

    def _restyle(self, *_):
        """Apply symbol, size and colour, as the user set them, to the chosen ground-truth layer."""
        layer = self.ground_truth.value
        if layer is None or kind_of(layer) != "ground_truth" or self._sizing:
            return
        symbol, colour, size = self.symbol.value, self.colour.value, float(self.size.value)
        layer.symbol = "disc" if symbol == "ring" else symbol
        if len(layer.data):
            layer.size = size
            layer.border_color = colour
            layer.face_color = "transparent" if symbol == "ring" else colour
        layer.current_size = size

    def _title(self, image_name: str, path: str) -> str:
        """The ground-truth layer's name: "<image> ground truth", the one it
        had where the same file (wherever typed from) is loaded again, else
        one no other file's layer holds ("<image> ground truth (<file>)")."""
        def source(lay):
            src = (lay.metadata or {}).get("source")
            return Path(src).resolve() if src else None

        own = Path(path).resolve()
        taken = {lay.name: source(lay) for lay in self.viewer.layers if kind_of(lay) == "ground_truth"}
        stem = Path(path).stem
        for title in ([f"{image_name} ground truth", f"{image_name} ground truth ({stem})"]
                      + [f"{image_name} ground truth ({stem} {k})" for k in range(2, 100)]):
            if taken.get(title, own) == own:
                return title
        return f"{image_name} ground truth ({stem})"

    @staticmethod
    def _scored_frames(pred_layer, pred, gt) -> tuple[int, int] | None:
        """The frames Compare scores (`evaluate.scored_frames`: those the
        localizations' run covered, their layer's ``frames``), said where
        they are widened or not known."""
        from ..evaluate import scored_frames

        span = (pred_layer.metadata or {}).get("frames")
        if pred_layer.ndim == 2:  # (a layer with no frame axis: said above)
            return span
        span, note = scored_frames(span, pred, gt, f"'{pred_layer.name}'")
        if note:
            notify("warning", WIDGET, note)
        return span

    def load(self, path=None):
        """Add a positions file as a points layer over the chosen image, read
        in a worker thread unless ``synchronous`` (a table of millions of
        rows held the window); the layer when synchronous, else None."""
        try:
            image, path, geo = self._to_load(path)
        except Exception as e:  # never a traceback
            notify("error", WIDGET, message_of(e))
            return None
        added = []

        def done(result):  # (on the main thread)
            try:
                added.append(self._add_positions(image, path, geo, *result))
            except Exception as e:  # never a traceback
                notify("error", WIDGET, message_of(e))

        if run_job(self, read_positions, (path, geo.pixel_size, image.name), done,
                   lambda e: notify("error", WIDGET, message_of(e)), self._idle) is not None:
            self.load_button.enabled = self.compare_button.enabled = False
        return added[0] if added else None

    def _to_load(self, path):
        """(the image, the path, the image's geometry) to load positions over, or DSIRError."""
        if self.worker is not None:
            raise DSIRError("still loading or comparing: wait for it to end")
        image = self.image.value
        if image is None:
            raise DSIRError("no image layer: open the stack the positions belong to first")
        if image.rgb:
            raise DSIRError(f"'{image.name}' is an RGB image; choose the camera stack")
        path = str(path or self.positions.value or "").strip()
        if not path or path == "." or Path(path).is_dir():
            raise DSIRError("choose a positions file")
        return image, path, image_geometry(image, lambda m: notify("warning", WIDGET, m))

    def _add_positions(self, image, path, geo, locs, from_px, said):
        """Add the positions read (`read_positions`) as a layer over ``image``; the layer."""
        for m in said:
            notify("warning", WIDGET, m)
        name = Path(path).name
        if image not in self.viewer.layers:
            raise DSIRError(f"'{image.name}' was removed while {name} was read")
        meta = {"source": path, "kind": "ground_truth", "pixel_size": geo.pixel_size,
                **({"from_px": True} if from_px else {})}
        if len(locs) == 0:
            raise DSIRError(f"{name}: the table has no rows")
        ndim = 3 if image.ndim == 3 else 2
        n = int(image.data.shape[0]) if ndim == 3 else 1  # a 2-D image is one frame: the file's frame 1
        frames = f"frames 1..{n}" if n > 1 else "frame 1 (the image is one frame)"
        outside = locs.frame >= n  # frames < 1 are refused by the parser
        if outside.all():
            raise DSIRError(f"{name}: all {len(locs)} rows lie outside {frames} of '{image.name}'; "
                            "is it the right file?")
        if outside.any():
            k = int(outside.sum())
            notify("warning", WIDGET, f"{k} of {len(locs)} rows of {name} lie outside {frames} "
                                      f"of '{image.name}' and were left out")
            locs = locs.select(~outside)
        title = self._title(image.name, path)
        (layer,) = put_layers(self.viewer, [points_layer_data(
            locs, title, geometry=geo, ndim=ndim,
            metadata=meta,
            size=self.size.value, symbol=self.symbol.value, color=self.colour.value,
            units=layer_units(image))])
        self.reset_choices()
        self.ground_truth.value = next(v for v in self.ground_truth.choices if v.name == layer.name)
        return layer

    @staticmethod
    def _at_run_pixel_size(gt: Localizations, gt_layer, pred_layer) -> Localizations:
        """Ground truth converted from pixels at the image's pixel size, scaled
        to the pixel size the localizations were made with where the run was
        given another (the two layers overlay; their nm would not match)."""
        gt_px = (gt_layer.metadata or {}).get("pixel_size")
        run_px = (pred_layer.metadata or {}).get("pixel_size")
        if not (gt_layer.metadata or {}).get("from_px") or not gt_px or not run_px:
            return gt
        gt_px, run_px = float(gt_px), float(run_px)
        if abs(run_px / gt_px - 1) < 1e-6:
            return gt
        notify("warning", WIDGET, f"'{gt_layer.name}' was converted from pixels of {gt_px:g} nm and "
                                  f"'{pred_layer.name}' made with {run_px:g} nm pixels: scored at {run_px:g} nm")
        f = run_px / gt_px
        return Localizations(gt.frame, gt.x * f, gt.y * f)

    def compare(self):
        """Match the localizations to the ground truth (in a worker thread
        unless ``synchronous``: 10^6 points took seconds), colour both and
        show the metrics; the `evaluate.Metrics` when synchronous, else None."""
        from ..evaluate import match

        pred_layer, gt_layer = self.localizations.value, self.ground_truth.value
        try:
            if self.worker is not None:
                raise DSIRError("still loading or comparing: wait for it to end")
            if pred_layer is None or gt_layer is None:
                raise DSIRError("choose a localizations layer and a ground-truth layer")
            if same_layer(pred_layer, gt_layer):
                raise DSIRError(f"'{gt_layer.name}' is chosen as both the localizations and the ground "
                                "truth; choose the localizations to score (e.g. '<image> DSIR localizations')")
            image, geo = self.image.value, None
            if image is not None and not (in_nm(pred_layer) and in_nm(gt_layer)):
                geo = image_geometry(image, lambda m: notify("warning", WIDGET, f"{m} to convert pixels to nm"))
            gt, pred = points_nm(gt_layer, geo), points_nm(pred_layer, geo)
            gt = self._at_run_pixel_size(gt, gt_layer, pred_layer)
            if pred_layer.ndim == 2 and len(np.unique(gt.frame)) > 1:
                notify("warning", WIDGET, f"'{pred_layer.name}' has no frame axis: its points are taken as "
                                          f"frame 1, and the ground truth of the other frames counts as missed")
            span = self._scored_frames(pred_layer, pred, gt)
            in_span = np.ones(len(gt), bool) if not span else (gt.frame >= span[0]) & (gt.frame < span[1])
            gt = gt.select(in_span)
            radius = float(self.radius.value)
        except Exception as e:  # never a traceback
            notify("error", WIDGET, message_of(e))
            return None

        shown = []  # (the metrics, when matched here)

        def done(found):  # (on the main thread; a layer removed meanwhile: a notification)
            try:
                shown.append(self._show_match(found, pred_layer, gt_layer, len(pred), in_span, span, radius))
            except Exception as e:  # never a traceback
                notify("error", WIDGET, message_of(e))

        if run_job(self, match, (gt, pred, radius), done, lambda e: notify("error", WIDGET, message_of(e)),
                   self._idle) is not None:
            self.load_button.enabled = self.compare_button.enabled = False
            self.result.value = "comparing…"  # (its results: queued)
        return shown[0] if shown else None

    def _idle(self):
        """A load or comparison ended: the buttons work again."""
        self.worker = None
        with contextlib.suppress(RuntimeError):  # (the Qt side deleted with the viewer)
            self.load_button.enabled = self.compare_button.enabled = True
            if self.result.value == "comparing…":
                self.result.value = ""

    def _show_match(self, found, pred_layer, gt_layer, n_pred, in_span, span, radius):
        """Colour both layers by a `match` and show its metrics; the metrics."""
        from ..evaluate import metrics_of

        gi, pi, dist = found
        m = self.metrics = metrics_of(int(in_span.sum()), n_pred, radius, dist)
        pred_tp, gt_tp = np.zeros(n_pred, bool), np.zeros(int(in_span.sum()), bool)
        pred_tp[pi], gt_tp[gi] = True, True
        gt_labels = np.full(len(in_span), "unscored", dtype=object)  # ground truth outside the run: unscored
        gt_labels[in_span] = np.where(gt_tp, "TP", "FN")
        colour_by_label(pred_layer, np.where(pred_tp, "TP", "FP"), {"TP": TP_COLOUR, "FP": FP_COLOUR})
        colour_by_label(gt_layer, gt_labels, {"TP": TP_COLOUR, "FN": FN_COLOUR, "unscored": "gray"})
        rmse = "n/a" if math.isnan(m.rmse) else f"{m.rmse:.1f} nm"
        self.result.value = (
            f"<b>Jaccard</b> {m.jaccard:.3f} &nbsp; <b>recall</b> {m.recall:.3f} &nbsp; "
            f"<b>precision</b> {m.precision:.3f} &nbsp; <b>RMSE</b> {rmse}<br>"
            f"TP {m.tp} (<span style='color:{TP_COLOUR}'>green</span>), "
            f"FP {m.fp} (<span style='color:{FP_COLOUR}'>red</span>), "
            f"FN {m.fn} (<span style='color:{FN_COLOUR}'>magenta</span>) within {m.radius:g} nm<br>"
            f"'{pred_layer.name}' vs '{gt_layer.name}'"
            + (f", frames {span[0]}-{span[1] - 1}" if span else "")
        )
        return m
