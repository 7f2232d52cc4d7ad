"""The per-batch loop: frames -> super-resolved localization images and their sum.

Frames stream through the network in batches, so memory does not grow with
the number of frames. `iter_reconstruct` is a generator that yields
`Progress` after each batch and returns a `Result`. Front ends do not call it
directly: they build a `napari_dsir.run.RunRequest` and drive
`napari_dsir.run.iter_run`, which resolves the pixel size, the device and
the model and then runs this loop (or its dask form, `distributed`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from .camera import Camera, saturation
from .defects import Stripes, find_dead_pixels, find_hot_pixels, find_stripes, repair
from .errors import DSIRError, OutOfMemory
from .illumination import flatten
from .illumination import measure as measure_illumination
from .io import Stack, check_pixel_size, stack_of
from .localize import (
    ECHO_RADIUS_PX,
    ECHO_RATIO,
    LocalizeParams,
    bright_objects,
    clear_halos,
    find_peaks,
    suppress_echoes,
    suppress_halos,
)
from .locs import Localizations
from .model import SPOT_CEILING_SHARE, DSIRModel
from .psf import (
    MAX_BINNING,
    MIN_FITS,
    STRADDLE_DENSITY_SHARE,
    STRADDLE_SHARE,
    bin_frames,
    measure_fwhm,
    network_binning,
    training_density,
    training_fwhm_range_px,
)
from .simulate import FWHM_TO_SIGMA


@dataclass
class Progress:
    """A progress record: ``done`` of ``total`` frames. ``kind`` is
    ``"progress"``, ``"start"`` (work begins; ``message`` says what) or
    ``"warning"`` (``message`` must be shown to the user)."""

    done: int
    total: int
    batch_size: int
    message: str = ""
    kind: str = "progress"


@dataclass
class Result:
    """``sum_image`` (Y, X) and optional ``frames`` (frame, Y, X) on the
    super-resolved grid of ``pixel_size`` nm (= camera pixel / upsampling);
    ``localizations`` in nm with frames numbered as in the input stack."""

    sum_image: np.ndarray
    pixel_size: float
    upsampling: int
    start: int
    stop: int
    frames: np.ndarray | None = None
    localizations: Localizations | None = None
    info: dict = field(default_factory=dict)


class _ArraySource:
    """Frames from a numpy/dask array (frame, y, x) or (y, x). A dask array
    over a file (`napari_dsir.io.stack_of`: a layer from this plugin's
    reader) is read from the file, as a run on the file reads it: the same
    frames sampled (the PSF, hot pixels, noise level), the same result."""

    def __init__(self, data):
        self.file = stack_of(data)
        if data.ndim == 2:
            data = data[None]
        if data.ndim != 3:
            raise DSIRError(f"expected frames (frame, y, x), got an array of shape {data.shape}")
        self.data = data
        self.shape = tuple(int(s) for s in data.shape)
        self._cached = None  # (first frame, frames) of the last dask chunk read

    def __len__(self):
        return self.shape[0]

    def read(self, start, stop):
        if self.file is not None:
            return self.file.read(start, stop)
        chunks = getattr(self.data, "chunks", None)
        if chunks is None or not hasattr(self.data, "compute"):
            return np.asarray(self.data[start:stop])
        # dask: compute each chunk of frames once, whatever the batch size
        # (a napari layer from our reader has chunks of 16 frames, a batch
        # on the CPU is 1 frame)
        bounds = np.cumsum((0,) + tuple(chunks[0]))
        parts = []
        while start < stop:
            c = int(np.searchsorted(bounds, start, side="right")) - 1
            c0, c1 = int(bounds[c]), int(bounds[c + 1])
            if self._cached is None or self._cached[0] != c0:
                self._cached = (c0, np.asarray(self.data[c0:c1].compute()))
            block = self._cached[1]
            end = min(stop, c1)
            parts.append(block[start - c0 : end - c0])
            start = end
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


class Repaired:
    """A frame source (`frame_source`) whose ``hot`` pixels ((n, 2) y, x;
    `napari_dsir.defects.find_hot_pixels`) are repaired, and whose fixed
    ``pattern`` (y, x ADU; `napari_dsir.defects.find_stripes`; None: none)
    is subtracted, in every frame read (`napari_dsir.defects.repair`)."""

    def __init__(self, src, hot: np.ndarray, pattern: np.ndarray | None = None):
        self.src, self.hot = frame_source(src), np.asarray(hot, np.int64).reshape(-1, 2)
        self.pattern = pattern
        self.shape = self.src.shape

    def __len__(self):
        return len(self.src)

    def __getattr__(self, name):  # path, pixel_size, metadata, ... of the source
        # (not its ``take``: `sample_frames` then reads through `read`, repaired)
        if name in ("src", "hot", "pattern", "take"):
            raise AttributeError(name)
        return getattr(self.src, name)

    def read(self, start, stop):
        return repair(self.src.read(start, stop), self.hot, self.pattern)


def frame_source(data):
    """``data`` (a `Stack`, an array (frame, y, x) or (y, x), or a source
    this made) as something frames are read from in ranges; one source
    serves the PSF's sample and the run (a dask array's chunk cache)."""
    if isinstance(data, (Stack, _ArraySource, Repaired)):
        return data
    if hasattr(data, "ndim") and hasattr(data, "shape"):
        return _ArraySource(data)
    raise DSIRError(f"cannot reconstruct from {type(data).__name__}; give a Stack or an array")


def parse_frames(spec: str | None, n: int, notes: list[str] | None = None) -> tuple[int, int]:
    """'START:STOP' (0-based, Python slice) -> (start, stop) within n frames;
    a range past either end is cut to the movie, with a note appended to
    ``notes`` (where given)."""
    if spec is None or spec == "":
        return 0, n
    try:
        a, b = spec.split(":")
        start = int(a) if a.strip() else 0
        stop = int(b) if b.strip() else n
    except ValueError:
        raise DSIRError(f"--frames must look like START:STOP, got {spec!r}") from None
    if start < 0:
        start += n
    if stop < 0:
        stop += n
    cut = (max(0, start), min(n, stop))
    if cut[1] <= cut[0]:
        raise DSIRError(f"frame range {spec!r} selects no frames of the {n} in the stack")
    if cut != (start, stop) and notes is not None:
        notes.append(f"--frames {spec} reaches past the movie's {n} frames: frames {cut[0]}:{cut[1]} are run")
    return cut


def default_batch_size(device: torch.device, model: DSIRModel | None = None,
                       frame_shape: tuple[int, int] | None = None) -> int:
    """Frames per batch when none is given: 32 on a GPU (a device out of
    memory halves it, `iter_reconstruct`); on the CPU 1 for networks on the
    up-sampled frame, where small batches stay in cache (1.8x the frame rate
    of 32 on 2 cores, benchmarks/speed.py), and `CPU_BATCH_CAMERA_RES` for
    camera-resolution networks, fewer for frames of ``frame_shape`` (y, x
    camera px) whose super-resolved batch would hold more than
    `CPU_BATCH_SR_PIXELS` pixels (at least 1)."""
    if torch.device(device).type != "cpu":
        return 32
    if model is None or not model.camera_resolution:
        return 1
    if frame_shape is None:
        return CPU_BATCH_CAMERA_RES
    per_frame = int(frame_shape[0]) * int(frame_shape[1]) * int(model.upsampling) ** 2
    return max(1, min(CPU_BATCH_CAMERA_RES, CPU_BATCH_SR_PIXELS // max(per_frame, 1)))


CPU_BATCH_CAMERA_RES = 8
#: super-resolved pixels of a CPU batch at most (`default_batch_size`): 8
#: frames of 128x128 camera px on the x8 grid. The system's out-of-memory
#: killer stops a process before torch can report the allocation failed (a
#: batch of 8 frames of 2048x2048 px, 2.1 billion pixels in each of its
#: tensors, was killed on a 24 GB machine; 1 frame ran with a peak of 5.5 GB,
#: benchmarks/results/memory_2048.md)
CPU_BATCH_SR_PIXELS = 1 << 23


def check_frame_range(n: int, start: int, stop: int | None) -> tuple[int, int]:
    """(start, stop) of ``n`` frames, ``stop`` None or past the end meaning
    the end; a range that selects no frame (a negative start included) is
    refused."""
    if start < 0:
        raise DSIRError(f"start {start} is negative: start and stop count frames from 0 (the command line's "
                        "--frames also takes them from the end)")
    stop = n if stop is None else min(stop, n)
    if not 0 <= start < stop:
        raise DSIRError(f"frame range {start}:{stop} selects no frames of the {n} in the stack")
    return start, stop


def check_args(n: int, start: int, stop: int | None, batch_size: int | None, pixel_size: float,
               model: DSIRModel, frame_shape: tuple[int, int] | None = None) -> tuple[int, int, int]:
    """Validated (start, stop, batch_size) for ``n`` frames of ``frame_shape``
    (y, x camera px; `default_batch_size` when no batch size is given)."""
    start, stop = check_frame_range(n, start, stop)
    if batch_size is None:
        batch_size = default_batch_size(model.device, model, frame_shape)
    if int(batch_size) < 1:
        raise DSIRError(f"batch size must be >= 1, got {batch_size}")
    check_pixel_size(pixel_size)
    return int(start), int(stop), int(batch_size)


def _trim_heap() -> None:
    """Hand freed heap memory back to the OS (glibc only; a no-op elsewhere).

    Frames of varying numbers of peaks allocate varying sizes; glibc keeps
    freed blocks, and over thousands of frames the resident memory creeps up
    (measured: +28 MB per 100 frames of 128x128 px). Trimming now and then
    keeps it flat. Not more often than every `TRIM_SECONDS`: a trim takes a
    few ms and the memory the next frames need is then faulted in again
    (a one-off check: trimmed every 32 frames, Bundled Tubes HD played four
    times took 6.1 s in one process, 5.2 s untrimmed; memory:
    benchmarks/results/memory.md).
    """
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes

            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC = None
TRIM_EVERY = 32  # frames: the tables of the last frames become one block
TRIM_SECONDS = 2.0  # the heap trimmed at most this often


def _is_oom(err: BaseException) -> bool:
    """A device out-of-memory error (torch raises a typed one for CUDA)."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    return oom is not None and isinstance(err, oom)


def sample_frames(src, start: int, stop: int, n: int, where: str) -> np.ndarray:
    """Up to ``n`` frames spread over ``start:stop`` of ``src`` (checked)."""
    idx = _sample_index(start, stop, n)
    return check_frames(_read_frames(src, idx), idx, where)[0]


def _sample_index(start: int, stop: int, n: int) -> np.ndarray:
    """Up to ``n`` frame numbers spread over ``start:stop``."""
    return start + np.unique(np.linspace(0, stop - start - 1, min(stop - start, n)).round().astype(int))


def _read_frames(src, idx) -> np.ndarray:
    if hasattr(src, "take"):  # one read of all the sample frames (dask)
        return np.asarray(src.take(idx))
    return np.stack([np.asarray(src.read(int(i), int(i) + 1)[0]) for i in idx])


def movie_noise_scale(src, model: DSIRModel, start: int, stop: int, where: str = "",
                      binning: int = 1, transform=None) -> tuple[float | None, float]:
    """(scale, factor): the level (ADU) a movie-normalised model divides
    frames ``start:stop`` of ``src`` (binned ``binning`` px a side for the
    network) by, from up to 64 frames spread over them: their noise level
    times the factor that keeps their spots within the model's training
    (`napari_dsir.model.DSIRModel.input_scale`); (None, 1.0) for per-frame
    normalisations. ``transform``: what the frames go through before the
    network (`network_input`), if anything."""
    if model.normalization != "movie":
        return None, 1.0
    sample = torch.from_numpy(sample_frames(src, start, stop, 64, where).astype(np.float32))
    if transform is not None:
        sample = transform(sample)
    return model.input_scale(bin_frames(sample, binning))


def network_input(camera: Camera | None, background_shape, device=None):
    """What (frame, y, x) frames in ADU go through before the network: with
    a camera and a background's shape (an uneven illumination followed by
    the fits), `napari_dsir.illumination.flatten` of their photons (given
    as ``photons`` where the caller has them); None (as they are) otherwise."""
    if camera is None or background_shape is None:
        return None
    shape = torch.as_tensor(np.asarray(background_shape, np.float32), device=device)

    def to_network(frames, photons=None):
        return flatten(camera.to_photons(frames) if photons is None else photons, shape.to(frames.device), camera)

    return to_network


def bright_message(factor: float) -> str:
    """The warning of a movie scaled down by `movie_noise_scale`'s ``factor``."""
    return (f"bright emitters: the network sees the frames scaled down {factor:.1f}x (their spots are taller, "
            f"in noise levels, than in {SPOT_CEILING_SHARE:.0%} of its training movies, where it adds false "
            f"detections beside them), and detections with less than {ECHO_RATIO:.0%} of the intensity of another "
            f"within {ECHO_RADIUS_PX:g} px (its echoes) are left out; the fits use the raw frames")


def halo_message(objects: int, left_out: int) -> str:
    """The warning of the objects beyond the network's training
    (`localize.bright_objects`) and the detections left out around them."""
    return (f"{objects} objects far brighter than anything in the network's training (saturated beads, dust?): "
            f"{left_out} detections around them left out and the network's output there cleared (its echoes "
            "of them; each keeps the detection at its centre)")


#: frames `movie_psf` measures the PSF on
PSF_SAMPLE_FRAMES = 32


def movie_psf(src, start: int, stop: int, pixel_size: float, camera: Camera | None = None,
              where: str = "") -> dict:
    """The PSF measured on up to `PSF_SAMPLE_FRAMES` frames spread over
    ``start:stop`` of ``src`` (over the range's first chunk of a dask array,
    which the run then reads from the source's cache: each chunk is computed
    once) by `napari_dsir.psf.measure_fwhm`: ``psf_fwhm_nm`` (the median),
    ``psf_fwhm_q25_nm`` (the lower quartile), ``psf_fwhm_q40_nm`` and
    ``psf_fwhm_q70_nm`` (40th and 70th percentiles), ``psf_fits``; None where too
    few spots were fitted. Given a ``camera`` (the fits will run, or the beam is taken out), also
    ``illumination``: the background's shape on the same frames
    (`napari_dsir.illumination.measure`, an `Illumination` or None), which
    the PSF's fits follow too; without one, ``illumination_hint``: the same
    with the default camera's baseline assumed, which nothing follows (the
    run tells the user to give the camera); a run takes both out of these
    keys (`napari_dsir.run`)."""
    return _measure_psf(src, start, stop, pixel_size, camera, where)[0]


def _first_chunk(src, start: int, stop: int) -> int:
    """``stop``, or the end of the chunk holding frame ``start`` for a dask
    array (its frames are then read from the source's cache, once)."""
    chunks = getattr(getattr(src, "data", None), "chunks", None)
    inner = getattr(src, "src", src)
    if isinstance(inner, _ArraySource) and inner.file is None and chunks is not None:
        bounds = np.cumsum((0,) + tuple(chunks[0]))
        stop = min(stop, int(bounds[np.searchsorted(bounds, start, side="right")]))
    return stop


#: frames `movie_saturation` samples
SATURATION_SAMPLE_FRAMES = 16


def movie_saturation(src, start: int, stop: int, where: str = "") -> tuple[float, float, int | None] | None:
    """`napari_dsir.camera.saturation` of up to `SATURATION_SAMPLE_FRAMES`
    frames spread over ``start:stop`` of ``src`` (over the range's first
    chunk of a dask array, as `movie_defects`): a movie with no signal, or
    clipped at its camera's full scale."""
    return saturation(_first_chunk_sample(src, start, stop, SATURATION_SAMPLE_FRAMES, where)[1])


def _first_chunk_sample(src, start: int, stop: int, n: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(frame numbers, frames as read) of up to ``n`` frames spread over
    ``start:stop`` of ``src`` (over the range's first chunk of a dask array:
    read once, from the source's cache), their pixel type checked."""
    src = frame_source(src)
    idx = _sample_index(start, _first_chunk(src, start, stop), n)
    sample = _read_frames(src, idx)
    _check_pixel_type(sample, idx, where)
    return idx, sample


#: frames `movie_defects` looks for hot and dead pixels on
HOT_SAMPLE_FRAMES = 64


def movie_defects(src, start: int, stop: int, where: str = "") -> tuple[np.ndarray, np.ndarray, Stripes | None]:
    """(n, 2) y, x of the hot pixels (`napari_dsir.defects.find_hot_pixels`)
    and of the dead ones (`find_dead_pixels`), and the offsets of the
    columns and rows (`find_stripes`; None: none), in up to
    `HOT_SAMPLE_FRAMES` frames spread over ``start:stop`` of ``src`` (over the
    range's first chunk of a dask array, as `movie_psf`)."""
    idx, sample = _first_chunk_sample(src, start, stop, HOT_SAMPLE_FRAMES, where)
    sample = sample.astype(np.float32, copy=False)  # once, for the searches
    dead = find_dead_pixels(sample)  # NaN padding among them
    if len(dead):  # hot pixels among the live ones: a dead region repaired first (its edge is no hot pixel)
        sample = repair(sample, dead)
    sample = check_frames(sample, idx, where)[0]  # NaN elsewhere replaced
    stripes = find_stripes(sample, dead)
    if stripes is not None:  # hot pixels on the frames as the run reads them
        sample = repair(sample, np.zeros((0, 2), np.int64), stripes.pattern)
    return find_hot_pixels(sample), dead, stripes


def _measure_psf(src, start, stop, pixel_size, camera, where) -> tuple[dict, np.ndarray]:
    """`movie_psf` and its sample of frames."""
    src = frame_source(src)
    sample = sample_frames(src, start, _first_chunk(src, start, stop), PSF_SAMPLE_FRAMES, where)
    # with no camera, measured with the default camera's (a baseline of 100
    # ADU): only to tell the user (`illumination_hint`), not to act on
    photons = (camera or Camera()).to_photons(torch.from_numpy(np.asarray(sample, np.float32)))
    beam = measure_illumination(photons.numpy())
    light = {"illumination" if camera is not None else "illumination_hint": beam}
    shape = getattr(light.get("illumination"), "shape", None)
    measured = measure_fwhm(sample, pixel_size, camera, background_shape=shape, photons=photons)
    if measured is None:
        return {"psf_fwhm_nm": None, "psf_fwhm_q25_nm": None, "psf_fwhm_q40_nm": None, "psf_fwhm_q70_nm": None,
                "psf_fits": 0, **light}, sample
    return {"psf_fwhm_nm": measured.median, "psf_fwhm_q25_nm": measured.q25, "psf_fwhm_q40_nm": measured.q40,
            "psf_fwhm_q70_nm": measured.q70, "psf_fits": measured.fits, **light}, sample


def movie_binning(src, model: DSIRModel, start: int, stop: int, pixel_size: float, camera: Camera | None = None,
                  where: str = "") -> tuple[int, dict]:
    """The binning the network needs for frames ``start:stop`` of ``src``
    (`napari_dsir.psf.network_binning`: 1 unless the PSF, measured by
    `movie_psf`, is wider in camera pixels than the model's training) and
    what was measured (`movie_psf`'s keys; ``psf_narrow``: the lower
    quartile, in the network's pixels, narrower than the training's
    narrowest, for `iter_reconstruct`'s ``echoes``; ``psf_wide``: the
    median wider than its widest; where 30 % of the
    spots are wider, ``network_density``: the network's
    detections per frame and 100 camera px^2 on the sample, unbinned, which
    keeps crowded movies unbinned: `napari_dsir.psf.network_binning`)."""
    info, sample = _measure_psf(src, start, stop, pixel_size, camera, where)
    if info["psf_fwhm_nm"] is None:
        return 1, info
    px = float(pixel_size)
    median, q40, q70 = info["psf_fwhm_nm"] / px, info["psf_fwhm_q40_nm"] / px, info["psf_fwhm_q70_nm"] / px
    lo, hi = training_fwhm_range_px(model)
    # 30 % of the spots wider than the training's widest at least (60 %
    # binned up to the training's densest, 30 % where the binned frames stay
    # sparse: `STRADDLE_DENSITY_SHARE`; q40 <= q70, and the binning grows
    # with the width)
    if STRADDLE_SHARE * info["psf_fits"] < MIN_FITS:
        # too few fits for their widest 30 % to say much (the background
        # alone under a beam: 32 fits of noise, 166-385 nm): the median
        q70 = median
    b = network_binning(q70, hi)
    # wider (the median): where the frames are too crowded to bin, the run
    # says so; a straddling PSF in crowded frames is mostly crowding (unseen
    # neighbours widen the fits: 70th percentile 403 nm on the ThunderSTORM
    # demo, whose true FWHM are 250-270 nm)
    info["psf_wide"] = median > hi
    if b > 1:  # would the binned frames be too crowded for the network?
        info["network_density"] = density = _detection_density(model, sample)
        most = training_density(model)
        b = max(network_binning(q40, hi, density, most),
                network_binning(q70, hi, density, most * STRADDLE_DENSITY_SHARE))
    # never binned below the training's narrowest: a model trained on a
    # narrow range of widths (one camera's) sees the fitted widths scatter
    # past its widest while the movie's PSF is within its range (a training
    # hunt: 420-450 nm on 160 nm pixels for a model of 350-450 nm, binned to
    # 1.3 px for its 2.2-2.8); no movie of benchmarks/binning_rule.py or
    # psf_width.py binned for the default model comes near (medians >= 3.3
    # px binned 2x2 against its 1.7)
    if b > 1 and median / b < BINNED_NARROWEST_SHARE * lo:
        info["binning_floor"] = b  # (not the crowding: the run does not say it is too crowded to bin)
        while b > 1 and median / b < BINNED_NARROWEST_SHARE * lo:
            b -= 1
    # a quarter of the spots narrower, as the network sees them (binned),
    # than the training's narrowest: its echoes are left out (the median
    # before: crowding widens fits, and the rule costs little where the
    # PSF is in range: benchmarks/results/echoes.md)
    info["psf_narrow"] = info["psf_fwhm_q25_nm"] / px / b < lo
    return b, info


#: `movie_binning` never brings the movie's median PSF width below this
#: share of the training's narrowest
BINNED_NARROWEST_SHARE = 0.8


def _detection_density(model: DSIRModel, frames: np.ndarray) -> float:
    """The network's detections per frame and 100 camera px^2 in (frame, y,
    x) ``frames`` (ADU), unbinned, at the model's own threshold; in the
    run's batches (`default_batch_size`: the sample at once held 1.2 GB for
    the `dsir` model's x8 grid on 64x64 frames)."""
    from .localize import params_for

    x = torch.from_numpy(np.asarray(frames, np.float32)).to(model.device)
    params, bs, n = params_for(model), default_batch_size(model.device, model, frames.shape[1:]), 0
    with torch.inference_mode():
        scale = model.movie_scale(x)
        for i in range(0, len(x), bs):
            n += len(find_peaks(model.predict(x[i : i + bs], scale=scale), 1.0, params))
    return n / (len(frames) * frames.shape[1] * frames.shape[2] / 100.0)


def check_frames(frames: np.ndarray, numbers, where: str = "") -> tuple[np.ndarray, NonFinite]:
    """Frames (frame, y, x) whose NaN and infinite pixels are replaced, and
    what was (`finite_frames`); refused (DSIRError) when they are not
    numbers. ``numbers`` are their frame numbers, for the message."""
    _check_pixel_type(frames, np.asarray(numbers), where)
    return finite_frames(frames, numbers)


def finite_frames(frames: np.ndarray, numbers) -> tuple[np.ndarray, NonFinite]:
    """``frames`` (frame, y, x) with their NaN and infinite pixels (a
    processed movie's) replaced by the median of their frame's finite
    pixels (0 in a frame that has none: flat, nothing is found in it), and
    what was replaced. Pixels NaN in every frame (a registered image's padding)
    are dead pixels, found and repaired before (`napari_dsir.defects`)."""
    if frames.dtype.kind != "f":
        return frames, NonFinite()
    bad = ~np.isfinite(frames)
    if not bad.any():
        return frames, NonFinite()
    out = frames.copy()
    per_frame = bad.reshape(len(frames), -1).sum(1)
    hit = np.flatnonzero(per_frame)
    for i in hit:
        finite = frames[i][~bad[i]]
        # a frame with no finite pixel: flat (0), whatever the batch (the networks see a
        # frame less its median: nothing is found in it)
        out[i][bad[i]] = np.median(finite) if finite.size else 0.0
    return out, NonFinite(len(hit), int(per_frame.sum()), int(np.asarray(numbers)[hit[0]]))


class NonFinite(NamedTuple):
    """NaN or infinite pixels replaced (`finite_frames`): in how many frames,
    how many pixels, the first such frame (0-based; None: none)."""

    frames: int = 0
    pixels: int = 0
    first: int | None = None

    def __add__(self, other: NonFinite) -> NonFinite:
        firsts = [f for f in (self.first, other.first) if f is not None]
        return NonFinite(self.frames + other.frames, self.pixels + other.pixels, min(firsts) if firsts else None)


def non_finite_message(nf: NonFinite) -> str:
    """The run's warning of the NaN and infinite pixels it replaced."""
    return (f"{nf.pixels} NaN or infinite pixel{'s' if nf.pixels != 1 else ''} in {nf.frames} "
            f"frame{'s' if nf.frames != 1 else ''} (the first: frame {nf.first}, 0-based) replaced by their frame's "
            "median: a processed movie? Localizations next to them may be off; the raw camera frames are better")


def _check_pixel_type(frames: np.ndarray, numbers: np.ndarray, where: str = "") -> None:
    """Refuse frames that are not numbers (`check_frames`' first test)."""
    if frames.dtype.kind not in "uif":
        what = f"frames {numbers[0]}-{numbers[-1]}: " if len(numbers) else ""
        raise DSIRError(f"{where}{what}pixel type {frames.dtype} is not supported")


# frames whose detections are refined in one call: at most FIT_EVERY frames
# and FIT_BLOCK_PIXELS pixels (8 MB of photons in float32; 512 frames of
# 64x64 px, 8 of 512x512). Each call has a fixed cost (the few free fits'
# iterations, a PSF fit per block where there are none): Bundled Tubes HD's
# 48,000 detections were refined in 0.52 s in one block of 361 frames,
# 0.57 s in blocks of 192 and 0.62 s in blocks of 128 (0.96-0.98 s in
# blocks of 32 before)
FIT_EVERY = 512
FIT_BLOCK_PIXELS = 1 << 21
# A fit that ends more than a camera pixel from the network's detection has
# locked onto a neighbour (measured on the ThunderSTORM demo, ~6 /um^2: such
# fits raise the RMSE of the matched pairs); the detection keeps the
# network's position (status PULLED, below).
MAX_SHIFT_PX = 1.0
# Each detection is fitted alone in its window, the light of the detections
# around it held at first estimates (max_group 1, one pass of at most 15
# iterations; the first estimates share the light of overlapping detections
# among them, `neighbours.deblend`). A detection with another one closer than
# 500 nm (5 camera px of 100 nm; a distance in nm, as the PSF's width is
# set by the optics, not by the camera's pixels) keeps the network's
# position (status CROWDED; photons, background and bound are fitted there,
# with the PSF sigma of the free fits): in crowded
# frames fits pulled by emitters the network missed placed emitters worse
# than the network (joint fits of up to 3 emitters raised the RMSE at 4 /um^2
# from 38.7 to 44.8 nm). A free fit whose residuals the model does not explain
# (chi-square more than 3 standard deviations above its degrees of freedom:
# an emitter that was not detected, or one outside the frame shining in),
# or that moved as above, was pulled away: it keeps the network's position
# and is fitted there as a crowded one (status PULLED; its uncertainty holds
# the network's calibrated error), instead of failing with no photons or
# uncertainty (failed fits at 1 /um^2: 11% -> 1%; std(error/uncertainty)
# of isolated emitters at 4 /um^2: 1.45 -> 1.12, benchmarks/results/
# calibrated.md). Figures against the previous settings:
# benchmarks/results/fit_settings.md. The test was 4 standard deviations
# while the fits started at a PSF of 1 camera px, whose neighbours' light,
# rendered too narrow, failed more of them; started from the movie's PSF
# (`fit_sigma_init`), 3 gives std(error / uncertainty) of the isolated
# emitters 0.87 / 1.04 / 0.82 at 6 /um^2 (sCMOS, EMCCD) and 4 /um^2 (160 nm
# pixels), against 0.92 / 1.16 / 0.89 with 4 (0.80 / 0.99 / 0.81 before;
# validation seeds 78101+), for no change at 0.1 /um^2 (89 % free fits).
FIT_MAX_GROUP = 1
FIT_MAX_ITER = 15
FIT_FALLBACK_PASSES = 1
FIT_ISOLATION_NM = 500.0
FIT_MAX_CHI2_SIGMA = 3.0
FIT_HOLD_PULLED = True
# Emitters outside the frame shine into its edge pixels, and the network
# reports them on the edge. With FIT_BEYOND_FRAME a free fit on the frame's
# edge may place its emitter up to half a window outside it, and one
# outside by more than two of its reported uncertainties
# (`napari_dsir.fit.BEYOND_BOUNDS`) is left out of the table (counted in
# ``Result.info["fit"]``). Off: on the accuracy benchmark's sCMOS sets
# (emitters up to 200 nm outside the frame, not in the truth) it left out
# 1-11 detections a set (1-3 % of those within 150 nm of the edge), and
# Jaccard moved by -0.002 to +0.003 (precision +0.000 to +0.003): most
# detections of such emitters are 0-100 nm outside, within a bound or two
# of the edge, where the data cannot tell them from emitters just inside
# (benchmarks/results/beyond_frame.md).
FIT_BEYOND_FRAME = False
# The free fits' uncertainty grows with the square root of their reduced
# chi-square above 1 (`napari_dsir.fit.refine` ``chi2_scale``): in crowded
# frames the free fits that pass the chi-square test still carry some
# undetected neighbour's light (std(error / uncertainty) of the isolated free
# fits, started from the movie's PSF with the test at 4: 1.32 / 1.69 -> 1.15
# / 1.43 at 6 /um^2 on the sCMOS / the EMCCD, 1.01 -> 0.97 at 0.1 /um^2, on
# validation movies of seeds 78101+).
FIT_CHI2_SCALE = True
# The fitting window is about 700 nm wide whatever the camera pixel (7 px of
# 100 nm): the odd number of pixels nearest to FIT_WINDOW_NM / pixel size,
# at least 5 (`fit_window`). Fixed at 7 px it covered 2.6x the area with
# 160 nm pixels, with more undetected neighbours' light in it: there 32 % of
# the isolated free fits failed the chi-square test (6 % at 100 nm) and the
# isolated emitters' std(error / uncertainty) was 0.61-0.95 at 0.5-4 /um^2;
# with 5 px, 14-19 % and 0.86-1.04 (validation movies of 160 nm pixels,
# seeds apart from the benchmarks': benchmarks/results/pixel_size.md).
FIT_WINDOW_NM = 700.0
# The fitted PSF sigma's bounds, in nm (0.5-3 px of 100 nm, as before): with
# 160 nm pixels and a FWHM of 180-240 nm (sigma 0.48-0.64 px) a bound of
# 0.5 px failed 176 of 1,900 fits, one of 0.31 px 62 (the others' positions,
# photons and uncertainties unchanged; a one-off check on validation movies)
FIT_SIGMA_NM = (50.0, 300.0)
# Both distances above (isolation, window) were chosen and measured on PSFs
# of FWHM 250-350 nm, the training's. For a wider PSF, measured on the movie
# (the lower quartile of its fitted FWHM, as the fits' start), both grow in
# proportion beyond FIT_PSF_REF_NM (`psf_scale`): two emitters of a 450 nm
# PSF 550 nm apart overlap as two of a 300 nm PSF 370 nm apart do. With
# 500 / 700 nm, the isolated emitters' std(error / uncertainty) was 1.19 /
# 1.52 / 1.44 on 100 nm pixels with FWHM 400-480 nm at 1 /um^2, 450-550 nm
# at 2 /um^2 and 400-480 nm at 4 /um^2 (free fits beside neighbours whose
# light the window cut or the isolation distance missed); scaled, 1.08 /
# 0.99 / 0.94, the RMSE 0.1-1.5 nm lower and the Jaccard the same
# (validation movies, seeds 79001+; PSFs up to 350 nm unchanged).
FIT_PSF_REF_NM = 350.0
# torch threads for the fits (at most torch's own setting): a block of 32
# frames of Bundled Tubes HD (~4,000 detections) fitted 1.3x faster with two
# threads than with one on the 2-core benchmark machine.
FIT_THREADS = 2
# the network's splits of one spot (detections closer than
# `napari_dsir.splits.RADIUS_PX` of its px) are merged before the fits where
# a likelihood-ratio test on the raw frame says they are one emitter
# (benchmarks/results/split_spots.md)
SPLIT_SPOTS = True


def psf_scale(psf_fwhm_nm: float | None) -> float:
    """How much the fits' window and isolation distance grow for a PSF of
    FWHM ``psf_fwhm_nm`` (nm; None: not measured): FWHM / `FIT_PSF_REF_NM`,
    at least 1."""
    if psf_fwhm_nm is None or not math.isfinite(float(psf_fwhm_nm)):
        return 1.0
    return max(1.0, float(psf_fwhm_nm) / FIT_PSF_REF_NM)


def fit_window(pixel_size_nm: float = 100.0, psf_fwhm_nm: float | None = None) -> int:
    """The fitting window (camera px, odd, >= 5) for ``pixel_size_nm``
    pixels: the odd number nearest to `FIT_WINDOW_NM` / pixel size (7 at
    100 nm, 5 at 130-160 nm, 9 at 80 nm), times `psf_scale` for a PSF wider
    than `FIT_PSF_REF_NM` (9 px at 100 nm for a FWHM of 450 nm)."""
    n = FIT_WINDOW_NM * psf_scale(psf_fwhm_nm) / float(pixel_size_nm)
    return max(5, 2 * round((n - 1) / 2) + 1)


def fit_settings(pixel_size_nm: float = 100.0, psf_fwhm_nm: float | None = None) -> dict:
    """The keywords `reconstruct` gives `napari_dsir.fit.refine` for frames
    of ``pixel_size_nm`` camera pixels and a PSF of FWHM ``psf_fwhm_nm``
    (None: not measured; see `psf_scale`), besides the threads and the
    model's network error (`network_error`), read from the constants above at each
    call: the one place for benchmarks, calibration and tests that refine as
    reconstruct does."""
    scale = psf_scale(psf_fwhm_nm)
    return dict(window=fit_window(pixel_size_nm, psf_fwhm_nm), dtype=torch.float32, max_shift_px=MAX_SHIFT_PX,
                max_group=FIT_MAX_GROUP, max_iter=FIT_MAX_ITER,
                fallback_passes=FIT_FALLBACK_PASSES, isolation_px=FIT_ISOLATION_NM * scale / float(pixel_size_nm),
                max_chi2_sigma=FIT_MAX_CHI2_SIGMA, hold_pulled=FIT_HOLD_PULLED, chi2_scale=FIT_CHI2_SCALE,
                beyond_frame=FIT_BEYOND_FRAME,
                sigma_bounds_px=(FIT_SIGMA_NM[0] / float(pixel_size_nm), FIT_SIGMA_NM[1] / float(pixel_size_nm)))


def fit_sigma_init(psf: dict | None) -> float | None:
    """The fits' starting PSF sigma (nm) for a movie whose PSF was measured
    (`movie_psf`'s keys, a run's ``Result.info``): from the lower quartile
    of the fitted FWHM (None: not measured, the fits start at 1 camera px).
    The light of the neighbours held beside each fit is rendered with it in
    the first pass: started at 1 px, a PSF of 440 nm on 100 nm pixels put too
    little of it in the tails and 16 % of the isolated free fits were pulled
    toward a neighbour 500-700 nm away (std(error / uncertainty) 1.82, 1.33
    from the measured PSF). The median is widened by unseen neighbours in
    crowded movies (353 nm against the simulated 250-350 at 6 /um^2: the
    crowded rows' photons came out 11 % high, 5 % from the lower quartile;
    validation seeds 77001+ and 78101+)."""
    q25 = (psf or {}).get("psf_fwhm_q25_nm")
    if q25 is None or not math.isfinite(float(q25)) or q25 <= 0:
        return None
    return float(q25) * FWHM_TO_SIGMA


def refine_settings(pixel_size_nm: float = 100.0, localize=None, sigma_init_nm: float | None = None,
                    binning: int = 1, window: int | None = None,
                    frame_shape: tuple[int, int] | None = None) -> dict:
    """Every keyword a run gives `napari_dsir.fit.refine` but the threads:
    `fit_settings` for the PSF the fits start from (``sigma_init_nm``,
    `fit_sigma_init`; ``window``: another fitting window), the network's
    error of ``localize`` (`network_error`), its ``binning`` and that start.
    ``frame_shape`` (y, x px): a window grown for a wide PSF stays within
    the frames."""
    fwhm = None if sigma_init_nm is None else float(sigma_init_nm) / FWHM_TO_SIGMA
    settings = fit_settings(pixel_size_nm, fwhm)
    if window is not None:
        settings["window"] = window
    elif frame_shape is not None and psf_scale(fwhm) > 1:
        fits = min(frame_shape) - (1 - min(frame_shape) % 2)  # the largest odd number of px in the frames
        settings["window"] = max(fit_window(pixel_size_nm), min(settings["window"], fits))
    return {**settings, **network_error(localize), "network_binning": binning, "sigma_init_nm": sigma_init_nm}


def network_error(params) -> dict:
    """The keywords of `napari_dsir.fit.refine` for the network's own error
    (`LocalizeParams` ``crowded_error_px``, ``crowded_error_power``,
    ``pulled_error_px``, ``crowded_error_density``,
    ``crowded_error_sigma_power``, ``crowded_error_sigma_min_px``,
    ``crowded_error_distance_power``; none without ``params``)."""
    if params is None:
        return {}
    return dict(crowded_error_px=params.crowded_error_px, crowded_error_power=params.crowded_error_power,
                pulled_error_px=params.pulled_error_px,
                crowded_error_density=params.crowded_error_density,
                crowded_error_sigma_power=params.crowded_error_sigma_power,
                crowded_error_sigma_min_px=params.crowded_error_sigma_min_px or 0.0,
                crowded_error_distance_power=params.crowded_error_distance_power)


def merge_splits(frames_photons, found: Localizations, pixel_size: float, camera: Camera, settings: dict,
                 binning: int = 1, first_frame: int = 0) -> tuple[Localizations, int]:
    """``found`` with the network's splits of one spot merged before the fits
    (`napari_dsir.splits`; not when `SPLIT_SPOTS` is off), and how many
    detections that left out. ``settings``: `refine_settings` of the fits."""
    if not SPLIT_SPOTS:
        return found, 0
    from .splits import split_spots

    sigma_nm = settings.get("sigma_init_nm") or pixel_size
    return split_spots(frames_photons, found, pixel_size, camera, first_frame=first_frame, window=settings["window"],
                       sigma_px=sigma_nm / pixel_size, sigma_bounds_px=settings["sigma_bounds_px"], binning=binning)


class _PendingFits:
    """Consecutive frames (in photons) and their detections, waiting to be
    refined together: one `fit.refine` call per block of frames instead of
    one per batch (a batch on the CPU is a single frame)."""

    def __init__(self, first: int):
        self.first, self.frames, self.locs = first, [], []
        self.chi2_hist = None  # the free fits' reduced chi-square (`fit.chi2_histogram`), over all blocks
        self.halved = 0  # blocks of fits split in two for want of memory

    @property
    def n_frames(self) -> int:
        return sum(len(f) for f in self.frames)

    @property
    def full(self) -> bool:
        """The block holds `FIT_EVERY` frames or `FIT_BLOCK_PIXELS` pixels."""
        n = self.n_frames
        return n >= FIT_EVERY or (n > 0 and n * self.frames[0][0].numel() >= FIT_BLOCK_PIXELS)

    def add(self, photons: torch.Tensor, found: Localizations) -> None:
        self.frames.append(photons)
        self.locs.append(found)

    def fit(self, pixel_size: float, camera: Camera, window: int | None, counts: dict,
            localize=None, binning: int = 1, sigma_init_nm: float | None = None,
            background_shape=None) -> Localizations:
        """The block's detections refined; the block emptied. Out of memory
        (a GPU), the block is fitted in halves, down to single frames."""
        found, n = Localizations.concatenate(self.locs), self.n_frames
        if len(found):
            frames = torch.cat(self.frames)
            self.frames = []  # the block's frames in one tensor, not two copies
            settings = refine_settings(pixel_size, localize, sigma_init_nm, binning, window, tuple(frames.shape[-2:]))
            found = self._fit(frames, found, self.first, pixel_size, camera, settings, binning, counts,
                              background_shape)
        self.first += n
        self.frames, self.locs = [], []
        return found

    def _fit(self, frames: torch.Tensor, found: Localizations, first: int, pixel_size: float, camera: Camera,
             settings: dict, binning: int, counts: dict, background_shape) -> Localizations:
        # imported here: scipy.spatial (0.3 s) is only needed when refining
        from .fit import BEYOND, SPLIT, chi2_histogram, refine

        fitted = None
        try:
            merged_locs, merged = merge_splits(frames, found, pixel_size, camera, settings, binning, first)
            fitted = refine(frames, merged_locs, pixel_size, camera, first_frame=first,
                            threads=min(FIT_THREADS, torch.get_num_threads()), background_shape=background_shape,
                            **settings)
        except RuntimeError as e:
            if not _is_oom(e):
                raise
            if len(frames) == 1:
                raise OutOfMemory("out of memory fitting the detections of one frame; use the CPU") from e
        if fitted is None:  # out of memory: the halves fitted outside the handler, whose traceback held the
            # failed attempt's tensors; each half merges its own splits (from the detections as they came)
            if frames.device.type == "cuda":
                torch.cuda.empty_cache()
            self.halved += 1
            half = len(frames) // 2
            parts = [(frames[:half], first, found.frame < first + half),
                     (frames[half:], first + half, found.frame >= first + half)]
            return Localizations.concatenate([
                self._fit(f, found.select(keep), f0, pixel_size, camera, settings, binning, counts,
                          background_shape) for f, f0, keep in parts])
        # counted once the fits are done (a half that runs out of memory counts nothing)
        if merged:
            counts[SPLIT] = counts.get(SPLIT, 0) + merged
        for k, v in fitted.summary().items():
            counts[k] = counts.get(k, 0) + v
        hist = chi2_histogram(fitted.free_chi2)
        self.chi2_hist = hist if self.chi2_hist is None else self.chi2_hist + hist
        # emitters outside the frame: counted, left out of the table
        return fitted.locs.select(fitted.status != BEYOND)


def iter_reconstruct(
    data,
    model: DSIRModel,
    *,
    pixel_size: float,
    batch_size: int | None = None,
    start: int = 0,
    stop: int | None = None,
    keep_frames: bool = False,
    localize: LocalizeParams | None = None,
    tile: int | str | None = "auto",
    camera: Camera | None = None,
    fit_window: int | None = None,
    where: str = "",
    noise_scale: float | None = None,
    binning: int = 1,
    echoes: bool = False,
    fit_sigma_nm: float | None = None,
    background_shape=None,
    refine: bool = True,
) -> Generator[Progress, None, Result]:
    """Reconstruct frames ``start:stop`` of ``data`` (a `Stack` or an array).

    ``pixel_size`` is the camera pixel size in nm; ``batch_size`` None means
    `default_batch_size` for the model's device. ``tile``: frames larger
    than this (camera px) go through the network in tiles (`DSIRModel.predict`).
    Yields `Progress` after every batch and returns the `Result`
    (``StopIteration.value``). On device out-of-memory the batch size halves
    and the run goes on (a ``"warning"`` record says so). ``where`` names
    the input in error messages.

    ``camera``: with ``localize`` and ``refine``, each detection is refined on its raw
    frame, converted to photons with this camera model, by Poisson maximum
    likelihood (`napari_dsir.fit.refine`, ``fit_window`` px; None: about
    700 nm, more for a PSF wider than `FIT_PSF_REF_NM`, `fit_window`): the table then
    has photons, background, sigma and uncertainty; detections with a
    neighbour closer than `FIT_ISOLATION_NM` (as much more for a wider PSF,
    `psf_scale`), and those whose free fit was
    pulled away, keep the network's position (status "crowded" or "pulled",
    values fitted there); failed fits keep it with NaN in those columns.
    Counts per status are in ``Result.info["fit"]``, the free fits' reduced
    chi-square (a check of the camera model) in ``Result.info["fit_chi2"]``
    (`napari_dsir.fit.chi2_histogram`). Before the fits, the network's
    splits of one bright spot into detections closer than 1.5 of its px
    are merged where a likelihood-ratio test on the raw frame says they are
    one emitter (`merge_splits`, `napari_dsir.splits`; counted in
    ``Result.info["fit"]`` under `napari_dsir.fit.SPLIT`). With
    `FIT_BEYOND_FRAME` (off), free fits that place their emitter outside the
    frame (status "beyond") are counted there and left out of the table. None: the
    network's positions only.

    Models normalised per movie (``normalization == "movie"``) divide every
    frame by one noise level: ``noise_scale``, or measured once on up to 64
    frames spread over ``start:stop`` (`movie_noise_scale`).

    ``binning``: the network sees the frames summed over ``binning`` x
    ``binning`` camera pixels (a PSF wider in pixels than its training's:
    `movie_binning`, `napari_dsir.psf`); its output is spread back over the
    camera grid (the sum image keeps its shape and total), its detections
    are placed on its own grid, and the fits use the camera's pixels.
    ``echoes``: leave out the weak detections beside stronger ones that a
    network makes for a PSF narrower than its training's
    (`napari_dsir.localize.suppress_echoes`, `ECHO_RADIUS_PX` of its px);
    also done where the movie's spots are taller than its training's
    (scaled down, `movie_noise_scale`).
    ``fit_sigma_nm``: the PSF sigma (nm) the fits start from (the movie's,
    `fit_sigma_init`; None: 1 camera px). ``background_shape`` (y, x): the
    background's shape over the frames, which the fits follow (an uneven
    illumination, `napari_dsir.illumination`; None: flat in each window);
    given a ``camera``, with or without the fits, the network then sees
    the frames with the beam taken out (`network_input`). ``refine``: False
    keeps the network's positions even with a ``camera`` (which then only
    takes the beam out).
    """
    src = frame_source(data)
    where = f"{where or data.path}: " if (where or isinstance(data, Stack)) else ""
    start, stop, batch_size = check_args(len(src), start, stop, batch_size, pixel_size, model, src.shape[1:])
    u = int(model.upsampling)
    h, w = src.shape[1:]
    sr_px = float(pixel_size) / u
    device = model.device
    total = stop - start
    acc = torch.zeros((h * u, w * u), dtype=torch.float64, device=device)
    frames_out = np.empty((total, h * u, w * u), np.float32) if keep_frames else None
    locs: list[Localizations] = []
    n_blocks = 0  # locs[:n_blocks] are consolidated blocks
    bs = int(batch_size)
    done = 0
    fit_counts: dict[str, int] = {}
    pending = _PendingFits(start)
    trimmed = time.monotonic()
    model.net.eval()
    if not (int(binning) == binning and 1 <= binning <= MAX_BINNING):
        raise DSIRError(f"binning must be an integer within 1..{MAX_BINNING}, got {binning}")
    nb = int(binning)
    bright = 1.0
    fitting = camera is not None and localize is not None and refine
    flat = network_input(camera, background_shape, device)
    if noise_scale is None:
        noise_scale, bright = movie_noise_scale(src, model, start, stop, where, nb, flat)
    yield Progress(0, total, bs, "reconstructing", kind="start")
    if bright > 1.0:
        yield Progress(0, total, bs, bright_message(bright), kind="warning")
    echoes = echoes or bright > 1.0  # taller spots than its training's: echoes too
    # objects brighter than the network's training (a saturated bead): the detections around them left out
    limit = model.input_limit
    halos = [0, 0]  # such objects, detections left out
    non_finite = NonFinite()
    while done < total:
        b0 = start + done
        b1 = min(b0 + bs, stop)
        raw = src.read(b0, b1)
        raw, bad = check_frames(raw, np.arange(b0, b1), where)  # (counted once the batch is done)
        try:  # nothing of the run's state changes in here: after running out of memory, the batch runs again
            with torch.inference_mode():
                x = torch.from_numpy(np.ascontiguousarray(raw, dtype=np.float32)).to(device)
                photons = camera.to_photons(x) if fitting else None  # for the fits (`flat` converts its own)
                seen = bin_frames(x if flat is None else flat(x, photons), nb)  # what the network sees
                sr = model.predict(seen, tile=tile, scale=noise_scale)
                objects = bright_objects(seen, noise_scale, limit) if limit is not None else []
                n_objects = sum(len(o) for o in objects)
                if localize is not None:
                    found = find_peaks(sr, sr_px * nb, localize, first_frame=b0)
                    if nb > 1:  # none in the padding of the binned frames' far edges, nor on their last pixel
                        # (the binned grid's last row and column, where emitters beyond the frame shine in: left
                        # out as before, when their peaks were placed on the frame's border, `_log_parabola`; a
                        # frame whose size the binning does not divide keeps its last camera pixel's half, also
                        # as before)
                        far = sr_px * nb * (sr.shape[-1] - 1), sr_px * nb * (sr.shape[-2] - 1)
                        found = found.select((found.x < min(w * pixel_size, far[0]))
                                             & (found.y < min(h * pixel_size, far[1])))
                    if echoes:
                        found = suppress_echoes(found, ECHO_RADIUS_PX * pixel_size * nb)  # network px
                    if n_objects:
                        found, n_halo = suppress_halos(found, objects, b0, pixel_size * nb)
                if n_objects:  # the image agrees with the table
                    clear_halos(sr, objects, u)
                if nb > 1:  # back on the camera's x u grid, the same total
                    sr = sr.repeat_interleave(nb, -2).repeat_interleave(nb, -1)[:, : h * u, : w * u] / nb**2
                # a batch in float32, the movie in float64; a batch of one frame as it is (its
                # sum a copy: 1 GB for a 2048x2048 px camera's x8 grid)
                batch_sum = sr[0] if len(sr) == 1 else sr.sum(0)
                sr_frames = sr.cpu().numpy() if frames_out is not None else None
        except RuntimeError as e:
            if _is_oom(e) and bs > 1:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                bs = max(1, bs // 2)
                yield Progress(done, total, bs, f"out of memory: batch size lowered to {bs}", kind="warning")
                continue
            if _is_oom(e):
                raise OutOfMemory("out of memory even with a batch of one frame; use the CPU") from e
            raise
        acc += batch_sum
        if frames_out is not None:
            frames_out[b0 - start : b1 - start] = sr_frames
        halos[0] += n_objects
        if localize is not None:
            if n_objects:
                halos[1] += n_halo
            if not fitting:
                locs.append(found)
            else:  # fitted in blocks of frames: one batched call for many detections
                pending.add(photons, found)
                if pending.full or b1 == stop:
                    halved = pending.halved
                    with torch.inference_mode():
                        locs.append(pending.fit(pixel_size, camera, fit_window, fit_counts, localize, nb,
                                                fit_sigma_nm, background_shape))
                    if pending.halved > halved and not halved:  # said once
                        yield Progress(done, total, bs, "out of memory in the fits: blocks of frames fitted in "
                                       "smaller parts", kind="warning")
        del sr, batch_sum
        if (done + b1 - b0) // TRIM_EVERY != done // TRIM_EVERY:
            # the last frames' small tables become one block (fewer, larger
            # arrays that do not pin the heap), then freed memory goes back
            if len(locs) > 1 and len(locs) > n_blocks + 1:
                locs[n_blocks:] = [Localizations.concatenate(locs[n_blocks:])]
            n_blocks = len(locs)
            if time.monotonic() - trimmed >= TRIM_SECONDS:
                _trim_heap()
                trimmed = time.monotonic()
        non_finite += bad
        done += b1 - b0
        yield Progress(done, total, bs)
    if halos[0]:
        yield Progress(done, total, bs, halo_message(*halos), kind="warning")
    if non_finite.frames:
        yield Progress(done, total, bs, where + non_finite_message(non_finite), kind="warning")
    return Result(
        sum_image=acc.cpu().numpy().astype(np.float32),
        pixel_size=sr_px,
        upsampling=u,
        start=start,
        stop=stop,
        frames=frames_out,
        localizations=Localizations.concatenate(locs) if localize is not None else None,
        info={"batch_size": bs, "device": str(device), "model": model.source,
              "fit": fit_counts if fitting else None,
              "fit_chi2": pending.chi2_hist, "noise_scale": noise_scale, "binning": nb,
              "brightness_factor": bright, "halos": tuple(halos), "non_finite": tuple(non_finite)},
    )
