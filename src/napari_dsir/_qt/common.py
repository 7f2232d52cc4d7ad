"""What both dock widgets share: notifications, layer choices, adding layers.

Thin napari glue only; the layers themselves come from `napari_dsir.layers`.
"""

from __future__ import annotations

import re

import numpy as np
from napari.utils.notifications import show_error, show_info, show_warning

from ..errors import DSIRError
from ..layers import layer_pixel_size

_SHOW = {"error": show_error, "warning": show_warning, "info": show_info}


def notify(level: str, widget: str, message: str) -> None:
    """A napari notification ``"<widget>: <message>"`` (level error, warning or info)."""
    _SHOW[level](f"{widget}: {message}")


#: characters a combo box of long choices is sized for (it was as wide as its longest choice: the
#: Reconstruct dock needed 704 px, leaving the canvas 279 px of a 1280 px screen); the rest is elided
COMBO_CHARS = 24


def narrow(*combos) -> None:
    """Size magicgui combo boxes for `COMBO_CHARS` characters, not their
    longest choice (its full text shows in the open list)."""
    from qtpy.QtWidgets import QComboBox

    for combo in combos:
        combo.native.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.native.setMinimumContentsLength(COMBO_CHARS)


def wrap(*labels) -> None:
    """Let magicgui labels wrap their text, and the dock be narrower than
    their longest line (magicgui fixes a label's width at its text's: after
    a run, DSIR Reconstruct's two-line status made the form 594 px wide)."""
    from qtpy.QtWidgets import QSizePolicy

    for label in labels:
        label.native.setWordWrap(True)
        label.native.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)


def scroll_in_dock(container) -> None:
    """Put a magicgui ``Container``'s form in a vertical scroll area inside
    its own widget (napari docks ``container.native``, and magicgui's
    ``scrollable`` wraps around it, where napari never sees it): the three
    docks stacked needed about 1,600 px of height and pushed a laptop's
    window, and its Run and Compare buttons, off the screen. Widgets added
    to ``container.native.layout()`` afterwards go below the scroll area."""
    from qtpy.QtCore import QEvent, QSize, Qt
    from qtpy.QtWidgets import QFrame, QScrollArea, QVBoxLayout, QWidget

    class Scroll(QScrollArea):
        def minimumSizeHint(self):  # as wide as the form needs (it scrolls up and down only), a few rows high
            form = self.widget()
            return QSize(form.minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width(), 120)

        def eventFilter(self, obj, event):  # the form's needs changed (a longer note): the dock follows
            if obj is self.widget() and event.type() == QEvent.Type.LayoutRequest:
                self.updateGeometry()
            return super().eventFilter(obj, event)

    native = container.native
    form = QWidget()
    native.layout().addStretch(1)  # rows packed at the top, as napari's dock does for a form it holds itself
    form.setLayout(native.layout())  # (Qt moves the layout, and the widgets in it, to the form)
    scroll = Scroll()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(form)
    form.installEventFilter(scroll)
    outer = QVBoxLayout(native)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)


def when_closed(container, callback=None) -> None:
    """Set ``container.dock_closed`` and call ``callback()`` when napari
    closes ``container``'s dock (its 'x': napari takes ``container.native``
    out of the dock, which Qt tells as a parent change to none; hiding or
    floating the dock is not closing it): `run_job` then shows no result."""
    from qtpy.QtCore import QEvent, QObject

    class Watch(QObject):
        def eventFilter(self, obj, event):
            if event.type() == QEvent.Type.ParentChange and obj.parent() is None:
                container.dock_closed = True
                if callback is not None:
                    callback()
            return False

    container.native.installEventFilter(Watch(container.native))  # (kept alive as the native's child)


def run_job(owner, job, args, done, failed, finished):
    """``job(*args)`` in a napari worker thread, held as ``owner.worker``
    until it ends (or here, where ``owner.synchronous``: tests, scripts);
    then ``done(result)`` (not where ``owner.dock_closed``, `when_closed`)
    or ``failed(exception)``, then ``finished()``, on the main thread. The
    worker, or None when run here."""
    if owner.synchronous:
        try:
            result = job(*args)
        except Exception as e:  # never a traceback in the viewer
            failed(e)
        else:
            done(result)
        finished()
        return None
    from napari.qt.threading import create_worker

    worker = create_worker(job, *args, _start_thread=False, _ignore_errors=True)
    # (its dock closed meanwhile, `when_closed`: its result is not shown)
    worker.returned.connect(lambda result: None if getattr(owner, "dock_closed", False) else done(result))
    worker.errored.connect(failed)
    worker.finished.connect(finished)
    owner.worker = worker
    worker.start()
    return worker


def message_of(exc: BaseException) -> str:
    """A one-line message for a user: a `DSIRError`'s own text, else the
    exception's type and first line (never a traceback)."""
    if isinstance(exc, DSIRError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover - a broken torch install
        return False


def kind_of(layer) -> str:
    """The plugin's ``metadata["kind"]`` of a layer ("localizations",
    "ground_truth", "dsir_sum"...), "" for layers from elsewhere."""
    return str((getattr(layer, "metadata", None) or {}).get("kind", ""))


def layer_id(layer) -> str:
    """What identifies a layer through a rename: napari's ``unique_id``
    (the widgets' proxies are new objects per access), else its name."""
    return str(getattr(layer, "unique_id", None) or layer.name)


def same_layer(a, b) -> bool:
    """Whether ``a`` and ``b`` are one layer of the viewer. napari hands
    widgets proxies (a new one per access, so ``a is b`` is False for the
    same layer); a layer's name is unique in its viewer."""
    return a is not None and b is not None and a.name == b.name


#: kinds of the image layers napari-dsir makes: results, never camera movies
OUTPUT_KINDS = ("dsir_sum", "dsir_frames", "render")


def layer_choices(viewer, layer_type, prefer: str = "", avoid: str = "",
                  exclude: tuple[str, ...] = ()) -> list[tuple[str, object]]:
    """(name, layer) choices of the viewer's layers of ``layer_type``: those
    of kind ``prefer`` first, those of kind ``avoid`` last (so a chooser's
    default is a fitting layer), else in the viewer's order, newest first;
    none of a kind in ``exclude``."""
    if viewer is None:
        return []
    layers = [lay for lay in reversed(list(viewer.layers))
              if isinstance(lay, layer_type) and kind_of(lay) not in exclude]
    rank = {prefer: 0, avoid: 2} if prefer or avoid else {}
    layers.sort(key=lambda lay: rank.get(kind_of(lay), 1))
    return [(lay.name, lay) for lay in layers]


def camera_pixel_size(layer) -> float | None:
    """The pixel size (nm) an image layer states (its scale in nm, else its metadata), or None."""
    return layer_pixel_size(layer.metadata, layer.scale, getattr(layer, "units", None))


def stated_pixel_size(layer) -> float | None:
    """`camera_pixel_size`, but None where it is the reader's default for a
    file that states none (its scale left as it was): a run then says it
    assumed it."""
    px = camera_pixel_size(layer)
    meta = layer.metadata or {}
    return None if meta.get("pixel_size_from_file") is False and px == meta.get("pixel_size") else px


def pixel_note(layer, typed: float) -> str:
    """What DSIR Reconstruct says of the pixel size a run of ``layer`` takes:
    the one ``typed`` (nm; 0: none), the layer's, the reader's default for a
    file that states none, or 100 nm assumed; a scale set without units
    (napari's pixels: ``scale=(1, 0.16, 0.16)`` meant as um) is named, since
    it looks stated and is not taken as a size."""
    px = camera_pixel_size(layer)
    if typed > 0:
        return f"using {typed:g} nm"
    if px is None:
        scale = float(layer.scale[-1]) if len(layer.scale) else 1.0
        if abs(scale - 1.0) > 1e-9:
            return (f"'{layer.name}' has a scale of {scale:g} in no unit (napari's pixels): 100 nm will be assumed; "
                    "type the pixel size here, or give the layer its units (e.g. layer.units = 'um')")
        return f"'{layer.name}' states no pixel size: 100 nm will be assumed"
    if stated_pixel_size(layer) is None:  # the reader's default, its scale left as it was
        return f"'{layer.name}' states no pixel size: {px:g} nm assumed (set it here)"
    return f"'{layer.name}' states {px:g} nm"


def layer_units(layer) -> tuple[str, ...] | None:
    """A layer's world units as text (its outputs take them: one set of units in the viewer), or None."""
    units = getattr(layer, "units", None)
    return tuple(str(u) for u in units) if units is not None else None


def colour_by_label(layer, labels: np.ndarray, colours: dict) -> None:
    """Colour a points layer by match label and keep the label as a feature."""
    if len(layer.data) == 0:
        return
    from napari.utils.colormaps.standardize_color import transform_color

    rgba = np.array([transform_color(colours[k])[0] for k in labels])
    feats = layer.features.copy() if len(layer.features) == len(labels) else None
    if feats is not None and len(feats.columns):
        feats["match"] = labels
        layer.features = feats
    else:
        layer.features = {"match": labels}
    set_marker_colour(layer, rgba)


def set_marker_colour(layer, colour) -> None:
    """Colour a points layer's markers: the outline, and the face too unless
    the markers are outlined (a transparent face: the image under them stays
    visible). ``colour``: one colour, or (n, 4) RGBA, one per point."""
    layer.border_color = colour
    face = np.asarray(layer.face_color)
    if not (face.size and np.all(face[:, 3] == 0)):
        layer.face_color = colour


def _output_of(layer, name: str) -> bool:
    """Whether ``layer`` is the plugin's output added as ``name`` and still
    bears that name (or napari's "NAME [k]" beside a layer of the user's): an
    output the user renamed, or a table opened under that name, is theirs."""
    if (layer.metadata or {}).get("output_name") != name:
        return False
    return layer.name == name or re.fullmatch(re.escape(name) + r" \[\d+\]", layer.name) is not None


def show_run_frames(viewer, layers) -> None:
    """Move the frame slider to the run's first frame where it stands on a
    frame the run did not cover: its localizations layer (of ``layers``)
    shows only the slider's frame, and looked empty after a run on frames
    0-N with the slider at frame 180."""
    points = next((lay for lay in layers if kind_of(lay) == "localizations" and lay.ndim == 3), None)
    frames = (points.metadata or {}).get("frames") if points is not None else None
    if not frames or viewer.dims.ndim < 3:
        return
    first, stop = (float(points.data_to_world(np.array([f, 0.0, 0.0]))[0]) for f in frames[:2])
    axis = viewer.dims.ndim - 3  # (napari aligns the layers' last axes: a 4-D layer puts the frames at 1)
    if not first - 1e-9 <= float(viewer.dims.point[axis]) < stop - 1e-9:
        viewer.dims.set_point(axis, first)


def put_layers(viewer, layer_data: list[tuple]) -> list:
    """Add LayerData tuples, each replacing in its place the plugin's layer
    of the same kind that was added under the same name (a re-run updates in
    place, `_output_of`); a layer of the user's own that bears the name
    stays, and the new one is named "NAME [1]" beside it (then replaced by
    re-runs in turn); an output the user renamed stays too.
    All of them or, on a failure, none (the layers already added are removed
    again and the exception re-raised)."""
    added = []
    try:
        for data, kwargs, layer_type in layer_data:
            name = kwargs["name"]
            meta = kwargs["metadata"] = dict(kwargs.get("metadata") or {}, output_name=name)
            kind = str(meta.get("kind", ""))
            old = next((lay for lay in viewer.layers if kind and kind_of(lay) == kind
                        and _output_of(lay, name)), None)
            index = None
            if old is not None:
                index = viewer.layers.index(old)
                viewer.layers.remove(old)
            layer = getattr(viewer, f"add_{layer_type}")(data, **kwargs)
            if index is not None:
                viewer.layers.move(viewer.layers.index(layer), index)
            added.append(layer)
    except Exception:
        for layer in added:
            if layer.name in viewer.layers:
                viewer.layers.remove(layer.name)
        raise
    return added
