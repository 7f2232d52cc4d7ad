"""Plugins > DSIR Render & Drift: from a localizations layer to an image, its
resolution and a drift-corrected layer; its points coloured by a feature
(photons, uncertainty, frame, ...).

The work is the Qt-free core's (`render.render`, `drift.estimate_drift`,
`resolution.frc` and `resolution.nena`); this widget collects the settings,
runs the job in a worker thread (``synchronous = True`` in tests: in the
calling thread) and turns the result into layers placed like the chosen
points layer, and into a plot with labelled axes inside the widget.
"""

from __future__ import annotations

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, PushButton, SpinBox
from napari.layers import Points
from psygnal import Signal

from ..errors import DSIRError
from ..figures import curves_figure
from ..layers import locs_from_layer, nm_placement, points_layer_data, render_layer_data
from ..render import MODE_WORDS, has_uncertainty, outside_area, render, resolve_mode
from .common import (
    kind_of,
    layer_choices,
    layer_units,
    message_of,
    notify,
    put_layers,
    run_job,
    scroll_in_dock,
    set_marker_colour,
    when_closed,
    wrap,
)

WIDGET = "DSIR Render & Drift"
MODES = (("Automatic", "auto"), ("Histogram", "hist"), ("Gaussian", "gauss"))


def layer_locs(layer):
    """The localizations of a points layer, in nm (`layers.locs_from_layer`):
    a napari-dsir layer's, or one drawn over its image; refused (DSIRError)
    for positions in pixels (a layer from another plugin)."""
    locs = locs_from_layer(layer.data, features=layer.features, metadata=layer.metadata, scale=layer.scale,
                           translate=layer.translate, units=getattr(layer, "units", None), name=layer.name)
    if len(locs) == 0:
        raise DSIRError(f"'{layer.name}' has no localizations")
    return locs


def placement(layer) -> tuple[tuple, tuple]:
    """(scale, translate) that put `layer_locs`' nm where ``layer``'s points are."""
    return nm_placement(layer.metadata, layer.scale, layer.translate, getattr(layer, "units", None), layer.ndim)


#: the colour-by box's entry that puts back one colour
ONE_COLOUR = "one colour"


def numeric_features(layer) -> list[str]:
    """The names of a points layer's numeric features (what it can be coloured by)."""
    import pandas as pd

    feats = getattr(layer, "features", None)
    if feats is None or not len(feats.columns):
        return []
    return [str(c) for c in feats.columns if pd.api.types.is_numeric_dtype(feats[c])]


def colour_points(layer, feature: str) -> str:
    """Colour a points layer's markers (the outline; a filled marker's face
    too) by its ``feature``: viridis over the 2-98 % range of the finite
    values, grey where there is none (a failed fit's photons). Returns a
    line for the status, with the range the colours span."""
    import numpy as np
    from napari.utils.colormaps import ensure_colormap

    values = np.asarray(layer.features[feature], dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        raise DSIRError(f"'{layer.name}' has no {feature} values to colour by")
    lo, hi = (float(v) for v in np.percentile(values[finite], [2, 98]))
    span = hi - lo if hi > lo else 1.0
    rgba = np.asarray(ensure_colormap("viridis").map(np.clip((np.where(finite, values, lo) - lo) / span, 0, 1)))
    rgba[~finite] = (0.5, 0.5, 0.5, 1.0)
    set_marker_colour(layer, rgba)
    missing = f", {int((~finite).sum())} without a value in grey" if not finite.all() else ""
    return f"'{layer.name}' coloured by {feature}: {lo:.4g} (purple) to {hi:.4g} (yellow){missing}"


def one_colour(layer, colour: str = "yellow") -> str:
    """Put back one colour on a points layer's markers."""
    set_marker_colour(layer, colour)
    return f"'{layer.name}' in one colour"


def render_job(locs, pixel_size: float, mode: str, sigma: float, by_frame: bool):
    """(the image, how many localizations lie outside it: it spans 0 nm to the largest position)."""
    if mode == "gauss" and sigma <= 0 and not has_uncertainty(locs):
        raise DSIRError("these localizations have no uncertainty to size the Gaussians; set a sigma (nm)")
    sigma_nm = sigma if sigma > 0 else None
    mode = resolve_mode(locs, mode, sigma_nm)
    image = render(locs, pixel_size, mode=mode, sigma_nm=sigma_nm, by_frame=by_frame)
    return image, outside_area(locs, pixel_size), mode


def drift_job(locs, segments: int):
    from ..drift import estimate_drift

    drift = estimate_drift(locs, segments=segments)
    return drift, drift.apply(locs)


def resolution_job(locs):
    """{"frc": (FRCResult, notes) or the error, "nena": NeNAResult or the error}."""
    from ..resolution import frc_of_field, nena

    out = {}
    for name, fn in (("frc", lambda: frc_of_field(locs)), ("nena", lambda: nena(locs))):
        try:
            out[name] = fn()
        except DSIRError as e:
            out[name] = e
    return out


class RenderDriftWidget(Container):
    """Render a localizations layer, measure its resolution, correct its drift."""

    finished = Signal()  # a job ended (done or failed)

    def __init__(self, napari_viewer):
        self.viewer = napari_viewer
        self.synchronous = False
        self.worker = None
        self.last = None
        self.points = ComboBox(label="Localizations",
                               choices=lambda _w: layer_choices(self.viewer, Points, prefer="localizations"),
                               tooltip="A localizations layer (DSIR Reconstruct's, or a table opened with napari-dsir)")
        self.colour_by = ComboBox(label="Colour points by", choices=lambda _w: [ONE_COLOUR, *self._features()],
                                  tooltip="Colour the layer's markers by a feature (viridis over its 2-98 % range)")
        self.colour_button = PushButton(text="Colour points")
        self.pixel_size = FloatSpinBox(label="Pixel size (nm)", min=0.5, max=1000.0, step=1.0, value=10.0,
                                       tooltip="Pixel size of the rendered image")
        self.mode = ComboBox(label="Mode", choices=MODES, value="auto",
                             tooltip="Histogram: localizations per pixel; Gaussian: one Gaussian per localization; "
                                     "Automatic: Gaussians where the layer has uncertainties or a sigma is set")
        self.sigma = FloatSpinBox(label="Sigma (nm)", min=0.0, max=1000.0, step=1.0, value=0.0,
                                  tooltip="Gaussian sigma; 0: each localization's own uncertainty")
        self.by_frame = CheckBox(text="Colour by frame (time)", value=False)
        self.render_button = PushButton(text="Render")
        self.segments = SpinBox(label="Drift segments", min=2, max=500, value=10,
                                tooltip="Time segments cross-correlated by RCC (each needs enough localizations)")
        self.drift_button = PushButton(text="Correct drift")
        self.resolution_button = PushButton(text="FRC and NeNA")
        self.status = Label(value="")
        super().__init__(widgets=[
            self.points, self.colour_by, self.colour_button,
            self.pixel_size, self.mode, self.sigma, self.by_frame, self.render_button,
            self.segments, self.drift_button, self.resolution_button, self.status,
        ])
        wrap(self.status)
        scroll_in_dock(self)
        when_closed(self)  # (a job's result then not shown)
        self._canvas = None
        self._user_choice = False  # the user picked the layer: refreshing keeps it
        self._refreshing = False
        self._newest = None  # the localizations layer added last (a re-run's goes back to its old place)
        if self.viewer is not None:  # (before the viewer's own reset_choices: connected after this)
            self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.points.changed.connect(self._on_pick)
        self.colour_button.changed.connect(self.colour)
        self.render_button.changed.connect(self.render)
        self.drift_button.changed.connect(self.correct_drift)
        self.resolution_button.changed.connect(self.resolution)
        self.reset_choices()

    def reset_choices(self, *_):
        """Refresh the layer choices. Unless the user picked a layer, follow the
        localizations layer added last (e.g. one DSIR Reconstruct just added,
        or filled again by a re-run: not a drift-corrected copy of the
        previous run's above it), else the topmost."""
        self._refreshing = True
        try:
            super().reset_choices()
            if not self._user_choice:
                choices = layer_choices(self.viewer, Points, prefer="localizations")
                newest = next((lay for _, lay in choices if lay is self._newest), None)
                if newest is not None:
                    self.points.value = newest
                elif choices and kind_of(choices[0][1]) == "localizations":
                    self.points.value = choices[0][1]
        finally:
            self._refreshing = False

    def _on_inserted(self, event):
        if isinstance(event.value, Points) and kind_of(event.value) == "localizations":
            self._newest = event.value

    def _on_pick(self, *_):
        if not self._refreshing:
            self._user_choice = True
        self.colour_by.reset_choices()

    def _features(self) -> list[str]:
        layer = self.points.value
        return numeric_features(layer) if layer is not None else []

    def colour(self, *_):
        """Colour the chosen layer's points by the chosen feature (or one colour)."""
        layer = self.points.value
        try:
            if layer is None:
                raise DSIRError("no localizations layer: run DSIR Reconstruct with localizations, or open a table")
            feature = self.colour_by.value
            if feature in (None, ONE_COLOUR):
                self.status.value = one_colour(layer)
            elif feature not in self._features():
                raise DSIRError(f"'{layer.name}' has no feature '{feature}'")
            else:
                self.status.value = colour_points(layer, feature)
        except Exception as e:  # never a traceback in the viewer
            self._failed(e)

    # -- jobs

    def _start(self, job, args, done, what: str):
        """Run ``job(*args)`` (a worker thread, or here when synchronous), then ``done(result)``."""
        if self.worker is not None:
            notify("warning", WIDGET, "already running")
            return None
        self.status.value = f"{what}…"
        return run_job(self, job, args, lambda result: self._finish(done, result), self._failed, self._on_finished)

    def _finish(self, done, result):
        self.last = result
        try:
            done(result)
        except Exception as e:  # never a traceback in the viewer
            self._failed(e)

    def _failed(self, exc):
        notify("error", WIDGET, message_of(exc))
        self.status.value = f"failed: {message_of(exc)}"

    def _on_finished(self):
        self.worker = None
        self.finished.emit()

    def _chosen(self):
        layer = self.points.value
        if layer is None:
            raise DSIRError("no localizations layer: run DSIR Reconstruct with localizations, or open a table")
        return layer, layer_locs(layer)

    def render(self, *_):
        """Render the chosen layer into an image layer that overlays it."""
        try:
            layer, locs = self._chosen()
        except Exception as e:  # never a traceback in the viewer
            return self._failed(e)
        p, mode, by_frame = float(self.pixel_size.value), self.mode.value, bool(self.by_frame.value)

        def done(result):
            image, out, used = result  # (the mode "auto" chose)
            scale, translate = placement(layer)
            put_layers(self.viewer, [render_layer_data(
                image, p, f"{layer.name} render", points_scale=scale, points_translate=translate,
                metadata={"source": layer.name, "mode": f"{used}{' by frame' if by_frame else ''}"},
                units=layer_units(layer))])
            self.status.value = (f"rendered {len(locs) - out} localizations ({MODE_WORDS[used]}): "
                                 f"{image.shape[1]}x{image.shape[0]} px of {p:g} nm")
            if out:
                notify("warning", WIDGET, f"{out} of {len(locs)} localizations of '{layer.name}' lie at negative "
                                          "positions (left of or above the image's 0 nm) and are not drawn")

        return self._start(render_job, (locs, p, mode, float(self.sigma.value), by_frame), done, "rendering")

    def correct_drift(self, *_):
        """Estimate the drift by RCC, add the corrected layer and plot the drift."""
        try:
            layer, locs = self._chosen()
        except Exception as e:  # never a traceback in the viewer
            return self._failed(e)

        def done(result):
            drift, corrected = result
            data, kwargs, kind = points_layer_data(
                corrected, f"{layer.name} drift-corrected", ndim=layer.ndim,
                metadata=dict(layer.metadata or {}, kind=kind_of(layer) or "localizations",
                              drift={"frame": (drift.frames + 1).tolist(), "x_nm": drift.x.tolist(),
                                     "y_nm": drift.y.tolist()}),
                size=float(layer.size.mean()) if len(layer.data) else None, color="cyan", units=layer_units(layer))
            scale, translate = placement(layer)
            kwargs.update(scale=scale, translate=translate)
            put_layers(self.viewer, [(data, kwargs, kind)])
            self._plot(drift.frames, {"x": drift.x, "y": drift.y}, "frame (from 0, as napari's)", "drift (nm)",
                       "Drift (subtracted)")  # (the drift table's frames, as ThunderSTORM's, from 1)
            span = max(float(drift.x.max() - drift.x.min()), float(drift.y.max() - drift.y.min()))
            self.status.value = f"drift spans {span:.1f} nm over {len(drift.frames)} frames; corrected layer added"

        return self._start(drift_job, (locs, int(self.segments.value)), done, "estimating the drift")

    def resolution(self, *_):
        """FRC resolution and NeNA precision of the chosen layer, with the FRC curve."""
        try:
            _layer, locs = self._chosen()
        except Exception as e:  # never a traceback in the viewer
            return self._failed(e)

        def done(out):
            f, n = out["frc"], out["nena"]
            f, notes = (f, []) if isinstance(f, Exception) else f
            parts = [(f"FRC resolution {f.resolution_nm:.1f} nm" + (f" ({'; '.join(notes)})" if notes else ""))
                     if not isinstance(f, Exception) else str(f),
                     f"NeNA precision {n.precision_nm:.1f} nm" if not isinstance(n, Exception) else str(n)]
            self.status.value = "; ".join(parts)
            if not isinstance(f, Exception):
                self._plot(f.frequencies, {"FRC": f.curve}, "spatial frequency (1/nm)", "FRC",
                           f"FRC resolution {f.resolution_nm:.1f} nm", hlines={"1/7": f.threshold})

        return self._start(resolution_job, (locs,), done, "measuring the resolution")

    def _plot(self, x, series, xlabel, ylabel, title, hlines=None):
        """Show a figure with labelled axes in the widget (replacing the last one)."""
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg

        fig = curves_figure(x, series, xlabel, ylabel, title, hlines, size=(4.0, 3.0), dpi=90)
        canvas = FigureCanvasQTAgg(fig)
        canvas.setMinimumHeight(240)
        if self._canvas is not None:
            self.native.layout().removeWidget(self._canvas)
            self._canvas.deleteLater()
        self.native.layout().addWidget(canvas)
        self._canvas = canvas
        canvas.draw()
