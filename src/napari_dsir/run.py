"""The one run path: a typed `RunRequest` and the generator that carries it out.

The CLI, the napari widgets and the Python API all build a `RunRequest` and
drive `iter_run`, which yields `Progress` records and returns a `Result`:

* the input is opened (a path, a `Stack` or an array (frame, y, x));
* the camera pixel size is resolved once, here (`resolve_pixel_size`): an
  explicit value, then the file's (or layer's) metadata, then 100 nm with a
  warning;
* the device and the model are resolved and loaded;
* the frames go through `reconstruct.iter_reconstruct` (one process) or
  `distributed.iter_reconstruct_distributed` (a dask cluster).

Warnings reach the front ends as `Progress` records of kind ``"warning"``, so
the CLI prints them and the widget shows a notification from the same loop.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .camera import Camera, assumed_camera, given_over_stated, resolve_camera
from .defects import inside_dead
from .errors import Cancelled, DSIRError, DSIRWarning, StatedCameraError
from .io import DEFAULT_PIXEL_SIZE_NM, Stack, check_pixel_size, open_stack, stack_of
from .progress import drive
from .reconstruct import (
    Progress,
    Repaired,
    Result,
    check_frame_range,
    fit_sigma_init,
    frame_source,
    iter_reconstruct,
    movie_defects,
    movie_saturation,
)


@dataclass
class RunRequest:
    """One reconstruction, as every front end asks for it.

    ``source``: a stack file or folder, a `Stack`, or an array (frame, y, x)
    or (y, x) of camera frames in ADU. ``pixel_size``: camera pixel size in
    nm given by the user (None: from ``source_pixel_size`` or the file, else
    100 nm). ``source_pixel_size``: the pixel size the source states (a
    napari layer's: its scale in nm, `napari_dsir.layers.layer_pixel_size`;
    before a file's own), used when ``pixel_size`` is None.
    ``source_camera``: the camera settings the source's own metadata states
    (key -> value as written; a napari layer's ``metadata["camera"]``, from
    `napari_dsir.io.Stack.camera_metadata`), used by the fits when
    ``camera`` is None; a path or a `Stack` states its file's.
    ``model``: None (the default model), a shipped model's name
    (`napari_dsir.model.SHIPPED_MODELS`), ``"legacy:PATH"``, a checkpoint
    path or a loaded `DSIRModel`. ``start``/``stop``: 0-based frame range,
    stop excluded. ``localize``: also find localizations (``threshold`` and
    ``radius`` override the model's calibrated localizer; ``refine``: fit
    each detection on its raw frame, in photons of ``camera``, for photons,
    background, sigma and uncertainty: `napari_dsir.fit`. Without the fits a
    ``camera`` given still serves: an uneven illumination measured on the
    movie, in photons, is taken out of the network's input,
    `napari_dsir.illumination`; ``fit_window``:
    its window in camera px, None: about 700 nm, more for a wide PSF,
    `reconstruct.fit_window`).
    ``binning``: the network sees frames binned this many camera px a side
    (None: 1 unless the PSF measured on the movie is wider in pixels than
    the model's training, `reconstruct.movie_binning`; a warning says so;
    where it is narrower, the network's echoes are left out: None only).
    ``hot_pixels``: find the camera's hot pixels on the movie and repair
    them in every frame (`napari_dsir.defects`; a warning says so), and
    the dead ones (the same value in every frame: padding, a dead column),
    keeping no detection from inside them, and subtract the offsets of
    columns and rows that read above or below their neighbours in every
    frame (fixed-pattern noise).
    ``keep_frames``:
    keep the per-frame super-resolved images. ``scheduler``: a dask
    scheduler address or ``local[:N]`` (or ``client``: a dask Client).
    """

    source: Any
    pixel_size: float | None = None
    source_pixel_size: float | None = None
    source_camera: dict | None = None
    model: Any = None
    device: str = "auto"
    start: int = 0
    stop: int | None = None
    batch_size: int | None = None
    upsampling: int | None = None
    tile: int | str | None = "auto"
    keep_frames: bool = False
    localize: Any = False  # bool, or a LocalizeParams
    threshold: float | None = None
    radius: int | None = None
    refine: bool = True
    camera: Any = None  # Camera, a dict or a file; None: with the fits, the file metadata, else assumed defaults
    fit_window: int | None = None
    binning: int | None = None  # the network's: None measures the PSF (`reconstruct.movie_binning`)
    hot_pixels: bool = True  # repair the camera's hot and dead pixels and line offsets found on the movie (`defects`)
    scheduler: str | None = None
    client: Any = None
    chunk: int = 256
    name: str = field(default="", repr=False)  # how messages name the input


@dataclass(frozen=True)
class PixelSize:
    """A resolved camera pixel size (nm) and where it came from:
    ``"given"``, ``"metadata"`` or ``"default"``."""

    nm: float
    origin: str

    @property
    def assumed(self) -> bool:
        return self.origin == "default"


def resolve_pixel_size(explicit: float | None, from_metadata: float | None) -> PixelSize:
    """The camera pixel size: ``explicit`` first, then ``from_metadata``,
    then `DEFAULT_PIXEL_SIZE_NM` (origin ``"default"``: the caller warns)."""
    for value, origin in ((explicit, "given"), (from_metadata, "metadata")):
        if value is not None:
            return PixelSize(check_pixel_size(value), origin)
    return PixelSize(DEFAULT_PIXEL_SIZE_NM, "default")


#: camera pixel sizes (nm, in the sample plane) of SMLM set-ups lie well
#: within this range; one outside it is most likely in another unit
PLAUSIBLE_PIXEL_NM = (20.0, 1000.0)


def implausible_pixel_size_warning(name: str, px: PixelSize) -> str | None:
    """A warning for a camera pixel size outside `PLAUSIBLE_PIXEL_NM`
    (e.g. 0.1 given for 100 nm, or a calibration in another unit); None
    within it."""
    lo, hi = PLAUSIBLE_PIXEL_NM
    if lo <= px.nm <= hi:
        return None
    where = "given" if px.origin == "given" else f"from the metadata of {name}"
    return (f"camera pixel size {px.nm:g} nm ({where}) is outside the {lo:g}-{hi:g} nm of SMLM cameras in the "
            "sample plane: is it in another unit (100 nm is 0.1 um)? The PSF, the fits and the precisions rest "
            "on it")


def check_frames_memory(name: str, frames: int, frame_shape, upsampling: int) -> None:
    """Refuse (DSIRError), before any work, per-frame images (kept in memory,
    float32, ``upsampling`` x the camera frame a side) that would need more
    than `napari_dsir.render.MEMORY_SHARE` of the memory free now."""
    from .render import MEMORY_SHARE, available_memory, memory_text

    h, w = (int(v) * int(upsampling) for v in frame_shape)
    need, free = frames * h * w * 4, available_memory()
    if free is not None and need > MEMORY_SHARE * free:
        raise DSIRError(f"{name}: the per-frame images of {frames} frames ({h}x{w} px each) need about "
                        f"{memory_text(need)} of memory and {memory_text(free)} is free: choose fewer frames "
                        "(--frames; widget: Frames) or leave out the per-frame output (the sum image and the "
                        "localizations stream)")


def uncalibrated_warning(model, params) -> str:
    """What a run says of a model with no calibrated localizer (a training
    interrupted before its calibration, or not calibrated)."""
    which = f" {model.source}" if model.source else ""
    return (f"the model{which} carries no calibrated localizer (its training was interrupted or not "
            f"calibrated): the threshold {params.threshold:g} is a default, not the model's own; give one "
            "(--threshold; widget: untick \"use the model's threshold\"), or finish the training (dsir train "
            "--resume)")


def uncalibrated_binning_warning(model) -> str:
    """What a run without localizations says when a model with no calibrated
    localizer counted the detections that decide a wide PSF's binning."""
    which = f" {model.source}" if model.source else ""
    return (f"the model{which} carries no calibrated localizer (its training was interrupted or not "
            "calibrated): the crowding that decides the binning for this wide PSF was counted at a default "
            "threshold (the model's default, whatever threshold the localizations take); choose the binning if it "
            "is wrong (CLI --binning, API binning=), or finish the training (dsir train --resume)")


def uncalibrated_error_message(params, report: dict) -> str | None:
    """What a run says when detections keep the network's position (crowded,
    pulled) and the model carries no calibration of the network's own error
    there (a training without --movies): their uncertainty is the fit's bound
    at that position alone, several times too small; None otherwise."""
    kept = report.get("crowded", 0) + report.get("pulled", 0)
    if not kept or len(params.crowded_error_px):
        return None
    return (f"{kept} of {report.get('total', kept)} detections keep the network's position, and the localizer "
            "settings carry no calibration of the network's error there (a model trained without --movies, the "
            "original weights, or settings given without it): their uncertainty is the fit's bound at that "
            "position alone, too small (several times, in crowded frames); the shipped models, or one "
            "trained with --movies, calibrate it")


def pixel_size_warning(name: str, file: bool = True) -> str:
    """The warning of a run that assumes the pixel size: of a file, or of
    an array (or a layer) that comes with none."""
    where = "no pixel size in the file" if file else "no pixel size given with the frames"
    return f"{name}: {where}; assuming {DEFAULT_PIXEL_SIZE_NM:g} nm (set the camera pixel size to change it)"


def camera_warning(camera: Camera) -> str:
    c = camera
    why = (" (the darkest pixels read below 100 ADU: no camera offset in these data)" if c.baseline == 0 else
           " (the data go below 0 ADU: the darkest 1 % of the pixels taken as no light)" if c.baseline < 0 else "")
    return (f"camera settings not given: assuming baseline {c.baseline:g} ADU{why}, {c.sensitivity:g} e-/ADU, "
            f"EM gain {c.em_gain:g}, QE {c.qe:g}; photons and precisions rest on them "
            "(set the camera to change them)")


def camera_metadata_message(name: str, camera: Camera, names: list[str] | None = None) -> str:
    """What a run says when its fits use the camera settings the input's
    metadata states (``names``: only those, under the settings given)."""
    which = f" ({', '.join(n.replace('_', ' ') for n in names)}, under those given)" if names else ""
    return (f"camera settings from the metadata of {name}{which}: {camera.describe()}; photons and precisions "
            "rest on them (set the camera to change them)")


def _stated_camera_error(name: str, err: DSIRError) -> DSIRError:
    """The error of camera settings the input's metadata states: whose, and how to get past them."""
    what = str(err) if isinstance(err, StatedCameraError) else f"camera settings in the file metadata: {err}"
    return DSIRError(f"{name}: {what} (set the camera to override them)")


def _as_camera(value, stated: dict | None = None) -> tuple[Camera | None, list[str]]:
    """``value`` (`RunRequest.camera`) as a `Camera`, and the names of the
    settings taken from the source's metadata ``stated``: a dict of some
    settings goes over those the source states (`camera.given_over_stated`);
    a camera file is read against it (a Picasso camera configuration picks
    its entry and settings by it); a `Camera` is the whole camera."""
    if value is None or isinstance(value, Camera):
        return value, []
    if isinstance(value, dict):
        return given_over_stated(value, stated)
    if isinstance(value, (str, os.PathLike)):
        return Camera.from_yaml(value, stated), []
    raise DSIRError(f"camera: expected camera settings or a camera file, got {type(value).__name__}")


def _first_frames(src, start: int, n: int = 4):
    """A few frames from ``start`` on, to check the camera baseline against
    (from the file, for an array over one: `napari_dsir.io.stack_of`)."""
    file = src if isinstance(src, Stack) else stack_of(src)
    if file is not None:
        return file.read(start, start + n)
    data = src if getattr(src, "ndim", 3) == 3 else src[None]
    return np.asarray(data[start : start + n])


def assumed_camera_of(source, start: int = 0) -> Camera:
    """The camera a run of ``source`` (a path, `Stack` or array; frame, y, x)
    from frame ``start`` assumes when none is given or stated:
    `camera.assumed_camera` of the frames it checks (`_first_frames`). The
    widget shows it before the run."""
    return assumed_camera(_first_frames(open_source(source), start))


def open_source(source):
    """``source`` as something `iter_reconstruct` reads: a path becomes a
    `Stack`, a list or tuple of frames (y, x) an array (frame, y, x)."""
    if isinstance(source, (str, os.PathLike)):
        return open_stack(Path(source))
    if isinstance(source, (list, tuple)):
        try:
            frames = np.stack([np.asarray(f) for f in source]) if len(source) else None
        except ValueError as e:
            raise DSIRError(f"a list of frames must hold arrays (y, x) of one shape ({e})") from None
        if frames is None or frames.ndim != 3:
            raise DSIRError("a list of frames must hold one or more arrays (y, x)")
        return frames
    return source


def _cancel_hooks(net, event: threading.Event | None) -> list:
    """Forward pre-hooks on every module of ``net`` that raise `Cancelled`
    as soon as ``event`` is set, so a cancel never waits for a whole batch."""
    if event is None or not hasattr(net, "modules"):
        return []

    def check(_module, _inputs):
        if event.is_set():
            raise Cancelled()

    return [m.register_forward_pre_hook(check) for m in net.modules()]


def load_request_model(spec, device: str = "auto"):
    """The model a request names, on its device (a `DSIRModel` is moved there)."""
    from .model import DSIRModel, load_model, resolve_device

    dev = resolve_device(device)
    if isinstance(spec, DSIRModel):
        return spec.to(dev)
    return load_model(spec, device=dev)


def iter_run(req: RunRequest, cancel: threading.Event | None = None) -> Generator[Progress, None, Result]:
    """Carry out ``req``: yields `Progress` (kind ``"warning"`` for things the
    user must be told) and returns the `Result`, whose ``info`` records the
    pixel size and its origin, the model, the device, the localizer and the
    time taken. Setting ``cancel`` stops the run by raising `Cancelled`."""
    from .localize import LocalizeParams, params_for

    t0 = time.perf_counter()
    _check_request(req)
    src = open_source(req.source)
    file = src if isinstance(src, Stack) else stack_of(src)  # (a dask array of `Stack.to_dask`: its file)
    name = req.name or (str(file.path) if file is not None else "the input")
    kind = getattr(getattr(src, "dtype", None), "kind", "f")
    if kind not in "uif":  # before any warning about its pixel size or camera
        raise DSIRError(f"{name}: pixel type {src.dtype} is not supported (need integer or float camera frames)")
    # a napari layer's (its scale: the user may have set it), else the file's
    meta_px = req.source_pixel_size if req.source_pixel_size is not None or file is None else file.pixel_size
    px = resolve_pixel_size(req.pixel_size, meta_px)
    movie_frames = _length(src)
    first_frame, stop_frame = check_frame_range(movie_frames, req.start, req.stop)  # before any frame is read
    total = stop_frame - first_frame
    yield Progress(0, total, req.batch_size or 0, "loading the model", kind="start")
    if req.stop is not None and req.stop > stop_frame:  # (the CLI's --frames is cut, and said, before)
        yield Progress(0, total, req.batch_size or 0, f"{name}: frames {req.start}:{req.stop} reach past its "
                       f"{stop_frame} frames: frames {first_frame}:{stop_frame} are run", kind="warning")
    if px.assumed:
        yield Progress(0, total, req.batch_size or 0, pixel_size_warning(name, file is not None), kind="warning")
    for note in src.notes if isinstance(src, Stack) else ():
        yield Progress(0, total, req.batch_size or 0, note, kind="warning")
    odd = implausible_pixel_size_warning(name, px)
    if odd:
        yield Progress(0, total, req.batch_size or 0, odd, kind="warning")
    model = load_request_model(req.model, req.device)
    if req.upsampling is not None and int(req.upsampling) != model.upsampling and model.camera_resolution:
        raise DSIRError(f"the model {model.source or ''} produces its x{model.upsampling} grid itself "
                        f"(a {model.arch} network); up-sampling {req.upsampling} is not possible with it")
    if req.upsampling is not None and int(req.upsampling) != model.upsampling:
        yield Progress(0, total, req.batch_size or 0,
                       f"the model was trained at up-sampling {model.upsampling}; using {req.upsampling}",
                       kind="warning")
        model.upsampling = int(req.upsampling)
    if req.keep_frames:
        check_frames_memory(name, total, src.shape[-2:], model.upsampling)
    params, uncalibrated_said = None, False
    if isinstance(req.localize, LocalizeParams):
        params = req.localize.validate()
    elif req.localize:
        params = params_for(model, threshold=req.threshold, radius=req.radius)
        if req.threshold is None and "localize" not in model.metadata:
            yield Progress(0, total, req.batch_size or 0, uncalibrated_warning(model, params), kind="warning")
            uncalibrated_said = True
    camera = None
    refine = params is not None and bool(req.refine)
    if refine:
        from .reconstruct import fit_window

        h, w = (int(s) for s in src.shape[-2:])
        window = fit_window(px.nm)
        if 2 <= min(h, w) < window:  # (below 2 px the network's own refusal)
            check = (f" at {px.nm:g} nm pixels: check the pixel size (--pixel-size, in nm), or"
                     if implausible_pixel_size_warning(name, px) else ":")
            raise DSIRError(f"{name}: frames of {h}x{w} px are smaller than the {window} px fitting "
                            f"window{check} localize them without the fits (--refine none; widget: untick "
                            "\"Fit photons, background and precision\"; API refine=False)")
    # a camera with the fits, or given without them; checked against (or assumed from) the first frames
    first = _first_frames(src, req.start) if refine or req.camera is not None else None
    camera_origin = None
    stated = src.camera_metadata if isinstance(src, Stack) else req.source_camera
    if stated is None and file is not None:  # (an array of a file's, given with no metadata of its own)
        stated = file.camera_metadata
    if refine or req.camera is not None:  # (without the fits, a camera given takes an uneven illumination out)
        try:
            explicit, from_stated = _as_camera(req.camera, stated)
            camera, assumed = resolve_camera(explicit, stated)
        except StatedCameraError as e:  # (a setting given that is impossible: its own error, as it is)
            raise _stated_camera_error(name, e) from None
        # "given, metadata": some settings given, the others the input's metadata states
        camera_origin = ("given, metadata" if from_stated else "given") if explicit is not None else (
            "assumed" if assumed else "metadata")
        if assumed:
            camera = assumed_camera(first)
            yield Progress(0, total, req.batch_size or 0, camera_warning(camera), kind="warning")
        elif from_stated or camera_origin == "metadata":
            yield Progress(0, total, req.batch_size or 0, camera_metadata_message(name, camera, from_stated),
                           kind="warning")
    if camera is not None:
        try:
            low = camera.check_data(first)
        except DSIRError as e:  # (a baseline above the data: the file's, or the one given)
            if camera_origin != "metadata" and "baseline" not in from_stated:
                raise
            raise _stated_camera_error(name, e) from None
        if low is not None:
            yield Progress(0, total, req.batch_size or 0, f"{name}: {low}", kind="warning")
    distributed = req.client is not None or bool(req.scheduler)
    if distributed and req.keep_frames:
        raise DSIRError("keep_frames (the per-frame images) is not available with a dask scheduler "
                        "(the frames stay on the workers)")
    if not distributed:
        src = frame_source(src)  # one reader for the PSF's sample and the run (a dask array's chunk cache)
    clipped = movie_saturation(src, req.start, req.start + total, f"{name}: ")
    if clipped is not None:
        yield Progress(0, total, req.batch_size or 0, saturation_message(*clipped), kind="warning")
    hot = dead = np.zeros((0, 2), np.int64)
    stripes = None
    if req.hot_pixels:
        hot, dead, stripes = movie_defects(src, req.start, req.start + total, f"{name}: ")
    if len(hot):
        yield Progress(0, total, req.batch_size or 0, hot_pixels_message(hot), kind="warning")
    if len(dead):
        yield Progress(0, total, req.batch_size or 0, dead_pixels_message(dead), kind="warning")
    pattern = None if stripes is None else stripes.pattern
    if stripes is not None:
        yield Progress(0, total, req.batch_size or 0, stripes_message(stripes), kind="warning")
    defects = np.concatenate([hot, dead]) if len(dead) else hot
    measured = Repaired(src, defects, pattern) if len(defects) or pattern is not None else src
    if not distributed:
        src = measured
    binning, psf = _binning(req, measured, model, px.nm, camera, total, name)
    if req.binning is None and (binning > 1 or (psf.get("psf_wide") and psf.get("network_density") is not None
                                                and not psf.get("binning_floor"))):
        yield Progress(0, total, req.batch_size or 0, binning_message(psf, px.nm, binning), kind="warning")
    if req.binning is None and psf["psf_fwhm_nm"] is None and not odd:  # (measured: `movie_binning`)
        unmeasured = unmeasured_psf_warning(name, model, px.nm, first_frame, stop_frame)
        if unmeasured:
            yield Progress(0, total, req.batch_size or 0, unmeasured, kind="warning")
    if psf.get("network_density") is not None and "localize" not in model.metadata and not uncalibrated_said:
        yield Progress(0, total, req.batch_size or 0, uncalibrated_binning_warning(model), kind="warning")
    echoes = bool(psf.get("psf_narrow")) and params is not None
    if echoes:
        yield Progress(0, total, req.batch_size or 0, echoes_message(psf, px.nm, binning), kind="warning")
    fit_sigma = fit_sigma_init(psf)  # the fits start from the measured PSF
    light = psf.pop("illumination", None)  # the background's shape, which the fits follow
    shape = None if light is None else light.shape
    if shape is not None:
        yield Progress(0, total, req.batch_size or 0, illumination_message(light, refine), kind="warning")
    hint = psf.pop("illumination_hint", None)  # no camera: measured with an assumed baseline, not followed
    if hint is not None and hint.shape is not None:
        yield Progress(0, total, req.batch_size or 0, illumination_hint_message(hint), kind="warning")
    client, own_client = req.client, False
    if req.scheduler and client is None:
        from .distributed import connect

        client, own_client = connect(req.scheduler), True
    hooks = _cancel_hooks(model.net, cancel)
    try:
        if client is not None:
            from .distributed import iter_reconstruct_distributed

            gen = iter_reconstruct_distributed(
                src, model, client, pixel_size=px.nm, batch_size=req.batch_size, start=req.start,
                stop=req.stop, localize=params, tile=req.tile, chunk=req.chunk, camera=camera,
                fit_window=req.fit_window, where=name, binning=binning, echoes=echoes, fit_sigma_nm=fit_sigma,
                hot_pixels=defects, pattern=pattern, background_shape=shape, refine=refine)
        else:
            gen = iter_reconstruct(
                src, model, pixel_size=px.nm, batch_size=req.batch_size, start=req.start, stop=req.stop,
                keep_frames=req.keep_frames, localize=params, tile=req.tile, camera=camera,
                fit_window=req.fit_window, where=name, binning=binning, echoes=echoes, fit_sigma_nm=fit_sigma,
                background_shape=shape, refine=refine)
        result = yield from _cancellable(gen, cancel)
    finally:
        for h in hooks:
            h.remove()
        if own_client:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()
    left_out = 0
    if len(dead) and result.localizations is not None:  # none from inside a dead region
        locs = result.localizations
        frame_shape = tuple(int(d) // int(result.upsampling) for d in result.sum_image.shape[-2:])
        inside = inside_dead(dead, frame_shape, locs.y / px.nm, locs.x / px.nm)
        left_out = int(inside.sum())
        result.localizations = locs.select(~inside) if left_out else locs
    result.info.update(
        dead_pixels=len(dead), dead_left_out=left_out,
        stripes=stripes.counts() if stripes is not None else {"columns": 0, "rows": 0, "max_adu": 0.0},
        camera_pixel_size=px.nm, pixel_size_origin=px.origin, movie_frames=movie_frames, model=model.source,
        arch=model.arch,
        localize=params.to_dict() if params is not None else None,
        camera=camera.to_dict() if camera is not None else None, camera_origin=camera_origin,
        seconds=time.perf_counter() - t0, hot_pixels=hot.tolist(), **psf,
        saturated=None if clipped is None else {"adu": clipped[0], "share": clipped[1]},
        **(light.to_dict() if light is not None else {}),
    )
    if refine and result.localizations is not None:  # what the fits say of the camera, and the fits that failed
        from .fit import camera_doubt, failed_fits_message, fit_report

        report = fit_report(result.info.get("fit"), result.localizations, result.info.get("fit_chi2"))
        if report:  # its counts are of every detection fitted, those left out in dead pixels after too
            report["dead_left_out"] = left_out
        result.info["fit_report"] = report  # what the front ends show (`fit.fit_summary`)
        for message in (camera_doubt(report), failed_fits_message(report),
                        uncalibrated_error_message(params, report)) if report else ():
            if message:
                yield Progress(total, total, req.batch_size or 0, message, kind="warning")
    if params is not None and result.localizations is not None and len(result.localizations) == 0:
        yield Progress(total, total, req.batch_size or 0, empty_message(params.threshold), kind="warning")
    return result


def empty_message(threshold: float) -> str:
    """The warning of a run that found no localization."""
    return (f"no localizations above the threshold {threshold:.5g}: if the movie holds emitters, lower the "
            "threshold (--threshold; widget: untick \"use the model's threshold\"; API threshold=)")


def _cancellable(gen, cancel: threading.Event | None):
    """Yield from ``gen``, checking ``cancel`` between items; return its value."""
    while True:
        if cancel is not None and cancel.is_set():
            gen.close()
            raise Cancelled()
        try:
            item = next(gen)
        except StopIteration as stop:
            return stop.value
        yield item


def _binning(req: RunRequest, src, model, pixel_size: float, camera, total: int, name: str) -> tuple[int, dict]:
    """The request's network binning (checked) or, when it gives none, the
    one the movie's PSF needs, with what was measured; with a binning given
    the PSF is measured only where a ``camera`` is given (the fits start
    from it; the beam is measured with it)."""
    from .psf import MAX_BINNING
    from .reconstruct import movie_binning, movie_psf

    if req.binning is not None:
        b = req.binning
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or not 1 <= b <= MAX_BINNING:
            raise DSIRError(f"binning must be an integer within 1..{MAX_BINNING} (or None: from the PSF), got {b!r}")
        if camera is None:
            return int(b), {}
        return int(b), movie_psf(src, int(req.start), int(req.start) + total, pixel_size, camera, f"{name}: ")
    return movie_binning(src, model, int(req.start), int(req.start) + total, pixel_size, camera, f"{name}: ")


def saturation_message(value: float, share: float, bits: int | None) -> str:
    """The warning of a movie with no signal or clipped at its camera's
    full scale (`napari_dsir.camera.saturation`)."""
    scale = f", the top of a {bits}-bit camera's range" if bits is not None else ""
    if share == 1.0:
        return (f"every pixel of the frames sampled reads {value:g} ADU{scale}: the movie holds no signal "
                "(a blank recording, or a camera saturated everywhere); nothing can be localized in it")
    return (f"{share:.1%} of the pixels of the frames sampled read {value:g} ADU{scale}: saturated. Light above "
            "it was clipped, so emitters there get too few photons and unreliable positions and precisions "
            "(lower the EM gain, the exposure or the laser power)")


def hot_pixels_message(hot: np.ndarray) -> str:
    where = ", ".join(f"(x {x}, y {y})" for y, x in hot[:5]) + (", ..." if len(hot) > 5 else "")
    return (f"{len(hot)} hot pixel{'s' if len(hot) > 1 else ''} (bright in most frames, not their neighbours: "
            f"{where}) replaced by their neighbours' median in every frame; the network would report an emitter "
            "there in every frame (hot_pixels=False / --keep-hot-pixels keeps them)")


def dead_pixels_message(dead: np.ndarray) -> str:
    """The warning of the dead pixels (`napari_dsir.defects.find_dead_pixels`) a run repairs."""
    return (f"{len(dead)} dead pixel{'s' if len(dead) > 1 else ''} (the same value, or NaN, in every frame: padding, "
            "a masked or dead part of the chip) replaced by their live neighbours' median (the frame's, inside a "
            "dead region) in every frame; no detection is kept from more than a pixel inside them")


def stripes_message(stripes) -> str:
    """The warning of the column and row offsets (`napari_dsir.defects.find_stripes`) a run subtracts."""
    n = stripes.counts()
    what = " and ".join(f"{n[k]} {k if n[k] > 1 else k[:-1]}" for k in ("columns", "rows") if n[k])
    one = n["columns"] + n["rows"] == 1
    return (f"{what} of the camera {'reads' if one else 'read'} above or below {'its' if one else 'their'} "
            f"neighbours in every frame (fixed-pattern noise, up to {n['max_adu']:g} ADU; the network would report "
            f"emitters along {'it' if one else 'them'}): {'its offset is' if one else 'their offsets are'} subtracted "
            "from every frame (hot_pixels=False / --keep-hot-pixels keeps them)")


def illumination_message(light, refine: bool = True) -> str:
    """What a run (with the fits: ``refine``) says of an uneven background
    (`napari_dsir.illumination.Illumination`)."""
    return (f"uneven illumination: the background is {light.ratio:.1f}x brighter at its brightest than at its "
            f"darkest (up to {100 * light.slope:.1f} % per pixel); the network sees the frames with it taken out"
            + (" and the fits follow its shape" if refine else ""))


def illumination_hint_message(light) -> str:
    """What a run without the camera's settings says of a background that
    looks uneven (`napari_dsir.illumination.Illumination`, measured with an
    assumed baseline): it is not taken out; the camera would let it be."""
    return (f"uneven illumination: the background looks {light.ratio:.1f}x brighter at its brightest than at its "
            "darkest (with a baseline of 100 ADU assumed); the network sees the frames as they are, which leaves a "
            "haze and false detections where it is bright: give the camera's settings (camera= / --camera, "
            "--baseline, --sensitivity; the widget's camera fields) and it sees the beam taken out")


#: the FWHM (nm) of a typical SMLM PSF (red dyes at NA 1.4-1.5: 250-300 nm; DSIR's training drew 200-300);
#: where a model's training stops short of it at the movie's pixels and the PSF cannot be measured, the run
#: says so
COMMON_FWHM_NM = 300.0


def unmeasured_psf_warning(name: str, model, pixel_size: float, start: int, stop: int) -> str | None:
    """The warning of a run whose frames hold too few isolated spots to
    measure the PSF (so the network sees them unbinned), where its
    training's PSFs at these pixels are narrower than `COMMON_FWHM_NM`:
    a common PSF may be too wide for it (on 4 frames of 65 nm pixels, an
    unbinned 300 nm PSF gave precision 0.81 where binned gave 1.00)."""
    from .psf import training_fwhm_range_px

    widest = training_fwhm_range_px(model)[1] * pixel_size
    if widest >= COMMON_FWHM_NM - 1e-6:
        return None
    return (f"{name}: too few isolated spots in frames {start}-{stop - 1} to measure the PSF: the network sees "
            f"them unbinned, as it was trained for PSFs up to {widest:.0f} nm FWHM at {pixel_size:g} nm pixels; "
            "for a wider PSF run more frames, or give a binning (dsir --binning 2; Python binning=2)")


def binning_message(psf: dict, pixel_size: float, binning: int) -> str:
    """What the user is told when the PSF is wide for the network: the
    frames are binned for it, or they are too crowded to be."""
    q = psf.get("psf_fwhm_q70_nm") or float("nan")
    f = psf.get("psf_fwhm_nm") or float("nan")
    wide = (f"the PSF is wide for the network in these pixels (FWHM {f:.0f} nm = {f / pixel_size:.1f} px, "
            f"the widest 30 % of {psf.get('psf_fits', 0)} fitted spots over {q:.0f} nm = {q / pixel_size:.1f} px)")
    if binning > 1:
        return (f"{wide}: the network sees the frames binned {binning}x{binning}; the fits use the camera's pixels "
                f"(binning=1 / --binning 1 turns this off)")
    return (f"{wide}, but the frames are too crowded to bin for it ({psf['network_density']:.1f} detections per "
            f"100 px^2): it may miss emitters (binning=2 / --binning 2 forces it)")


def echoes_message(psf: dict, pixel_size: float, binning: int = 1) -> str:
    """What the user is told when the PSF is narrow for the network (as it
    sees the frames: binned ``binning`` x ``binning``)."""
    from .localize import ECHO_RADIUS_PX, ECHO_RATIO

    f, q = psf["psf_fwhm_nm"], psf["psf_fwhm_q25_nm"]
    seen = (f"FWHM {f:.0f} nm = {f / pixel_size:.1f} px, lower quartile {q:.0f} nm = {q / pixel_size:.1f} px"
            if binning == 1 else
            f"binned {binning}x{binning} for it: lower quartile of the FWHM {q:.0f} nm = "
            f"{q / pixel_size / binning:.1f} of its px")
    return (f"the PSF is narrow for the network as it sees the frames ({seen}): detections with less than "
            f"{ECHO_RATIO:.0%} of the intensity of another within {ECHO_RADIUS_PX:g} of its px (its echoes) are "
            "left out (an explicit binning / --binning keeps them)")


def _check_request(req: RunRequest) -> None:
    """Refuse a frame number or tile size of the wrong kind (the CLI and the
    widget give whole numbers; the Python API takes what it is given)."""
    for name in ("start", "stop"):
        v = getattr(req, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer))):
            raise DSIRError(f"{name} must be a whole frame number (0-based), got {v!r}")
    t = req.tile
    if t not in ("auto", None) and (isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0):
        raise DSIRError(f"tile must be 'auto', None (never tile) or a size in camera px >= 0, got {t!r}")


def _length(src) -> int:
    """Frames in ``src`` (a `Stack`, or an array (frame, y, x) or (y, x))."""
    return len(src) if isinstance(src, Stack) else (1 if getattr(src, "ndim", 3) == 2 else int(src.shape[0]))


def run(req: RunRequest, progress: Callable[[Progress], None] | None = None,
        cancel: threading.Event | None = None) -> Result:
    """Blocking form of `iter_run`; ``progress`` is called with every record.
    Without one, the run's warnings (an assumed camera or pixel size, failed
    fits, ...) come as Python warnings (`DSIRWarning`): a script or a notebook
    shows them."""
    return drive(iter_run(req, cancel), progress or _python_warnings)


def _python_warnings(p: Progress) -> None:
    if p.kind == "warning":
        _python_warning(p.message)


def _python_warning(message: str) -> None:
    """A `DSIRWarning`, shown where the caller's code called napari_dsir."""
    warnings.warn(message, DSIRWarning, stacklevel=_outside_level())


def _outside_level() -> int:
    """The `warnings.warn` stacklevel, from its caller, of the first frame outside napari_dsir."""
    import sys

    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("napari_dsir"):
        frame, level = frame.f_back, level + 1
    return level


def save_localizations(result: Result, path: str | os.PathLike, *, overwrite: bool = False, warn=None) -> Path:
    """Write ``result``'s localizations at ``path`` as `dsir localize -o` does:
    a ThunderSTORM CSV with its protocol beside it, or a Picasso HDF5 + YAML
    in the run's camera pixels and frame, whose Frames is the movie's (the format by the extension),
    stating the run (`napari_dsir.io.tables.run_protocol`: camera, model,
    frames, ...). Atomic; an existing file is replaced only with
    ``overwrite``. ``warn`` (None: a `DSIRWarning`) is told of the rows
    Picasso will leave out of its file."""
    from .io import write_localizations
    from .io.tables import run_protocol

    if result.localizations is None:
        raise DSIRError("the run has no localizations (run it with localize=True)")
    if not (result.info or {}).get("camera_pixel_size"):
        raise DSIRError("the result states no camera pixel size (info['camera_pixel_size']): not a run's "
                        "result? Write its localizations with napari_dsir.io.write_localizations")
    stated = run_protocol(result)  # (its camera pixel size, frame and movie length the Picasso file's)
    return write_localizations(path, result.localizations, overwrite=overwrite,
                               pixel_size=stated["camera_pixel_size"], frame_shape=tuple(stated["frame_shape"]),
                               n_frames=stated["movie_frames"] or result.stop, metadata=stated,
                               warn=warn or _python_warning)


def reconstruct(source, model=None, progress: Callable[[Progress], None] | None = None, **fields) -> Result:
    """Reconstruct ``source`` (path, `Stack` or array) with ``model`` (None:
    the shipped one): the Python API. ``fields`` are those of `RunRequest`
    (``pixel_size``, ``start``, ``stop``, ``localize``, ``threshold``...)."""
    return run(RunRequest(source, model=model, **fields), progress)
