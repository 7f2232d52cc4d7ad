"""DSIR Filter: a localizations layer's rows whose photons, uncertainty,
sigma or background lie in ranges, as a new layer (`napari_dsir.filters`,
as `dsir filter`). The new layer is the chosen one's points, features,
markers and placement, the rows kept; its metadata names the filter."""

from __future__ import annotations

import math

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSpinBox, Label, PushButton
from napari.layers import Points

from ..errors import DSIRError
from ..filters import describe, keep, summary
from ..layers import locs_from_points
from .common import kind_of, layer_choices, message_of, notify, put_layers, scroll_in_dock, wrap

WIDGET = "DSIR Filter"

#: (field name, column, end, label, largest value): a field at 0 sets no limit
LIMITS = (("min_photons", "photons", 0, "Photons at least", 1e9),
          ("max_photons", "photons", 1, "Photons at most", 1e9),
          ("max_uncertainty", "uncertainty", 1, "Uncertainty at most (nm)", 1e4),
          ("min_sigma", "sigma", 0, "Sigma at least (nm)", 1e4),
          ("max_sigma", "sigma", 1, "Sigma at most (nm)", 1e4),
          ("max_background", "background", 1, "Background at most (photons/px)", 1e9))


class FilterWidget(Container):
    """Keep a localizations layer's rows within limits of their features."""

    def __init__(self, napari_viewer):
        self.viewer = napari_viewer
        self.points = ComboBox(label="Localizations",
                               choices=lambda _w: layer_choices(self.viewer, Points, prefer="localizations"),
                               tooltip="A localizations layer (DSIR Reconstruct's, or a table opened with napari-dsir)")
        self.fields = {}
        for name, _column, _end, label, top in LIMITS:
            self.fields[name] = FloatSpinBox(label=label, min=0.0, max=top, step=1.0, value=0.0,
                                             tooltip="0: no limit; a row without a value (a failed fit) is left out "
                                                     "by any limit on it")
            self.fields[name].native.setSpecialValueText("none")
        self.filter_button = PushButton(text="Filter")
        self.status = Label(value="")
        super().__init__(widgets=[self.points, *self.fields.values(), self.filter_button, self.status])
        wrap(self.status)
        scroll_in_dock(self)
        self.filter_button.changed.connect(lambda *_: self.filter())
        self.reset_choices()

    def ranges(self) -> dict[str, tuple[float, float]]:
        """The limits set, as `filters.keep` ranges (column -> (lo, hi))."""
        out: dict[str, list[float]] = {}
        for name, column, end, _label, _top in LIMITS:
            value = float(self.fields[name].value)
            if value > 0:
                out.setdefault(column, [-math.inf, math.inf])[end] = value
        bad = [c for c, (lo, hi) in out.items() if lo > hi]
        if bad:
            raise DSIRError(f"the {bad[0]} limits cross: the lower one is above the upper one")
        return {c: (lo, hi) for c, (lo, hi) in out.items()}

    def filter(self):
        """Add the chosen layer's rows within the limits as "<layer> filtered"; that layer or None."""
        layer = self.points.value
        try:
            if layer is None:
                raise DSIRError("no localizations layer: run DSIR Reconstruct with localizations, or open a table")
            ranges = self.ranges()
            if not ranges:
                raise DSIRError("set a limit (photons, uncertainty, sigma or background) to filter on")
            locs = locs_from_points(np.asarray(layer.data), layer.features)  # (the features; positions unused)
            mask, out = keep(locs, ranges, f"'{layer.name}'")
            (added,) = put_layers(self.viewer, [(np.asarray(layer.data)[mask], _kwargs(layer, mask, ranges),
                                                 "points")])
        except Exception as e:  # never a traceback in the viewer
            notify("error", WIDGET, message_of(e))
            self.status.value = f"failed: {message_of(e)}"
            return None
        self.status.value = summary(mask, out, ranges)
        return added


def _kwargs(layer, mask: np.ndarray, ranges: dict) -> dict:
    """The new layer's: ``layer``'s placement, features and markers, the rows of ``mask``."""
    features = layer.features.iloc[np.flatnonzero(mask)].reset_index(drop=True)
    kw = {"name": f"{layer.name} filtered", "scale": layer.scale, "translate": layer.translate,
          "features": features, "metadata": dict(layer.metadata or {}, kind=kind_of(layer) or "localizations",
                                                 filter=describe(ranges), source=layer.name),
          "border_width_is_relative": layer.border_width_is_relative}
    for key in ("size", "symbol", "face_color", "border_color", "border_width"):  # one per point
        kw[key] = np.asarray(getattr(layer, key))[mask]
    if getattr(layer, "units", None) is not None:
        kw["units"] = layer.units
    return kw
