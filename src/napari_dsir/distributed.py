"""Reconstruction spread over a dask.distributed cluster.

The frames become a dask array (frame, y, x) in blocks of ``chunk`` frames.
Each block is reconstructed on a worker by the same `iter_reconstruct` as a
single process; the client reduces the blocks as they finish: it adds the
sum images (float64) and concatenates the localization tables, sorted by
frame. A `Stack` is read by the workers themselves, by path, so the files
must be visible to them (one machine, or a shared file system).
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np

from .camera import Camera
from .defects import repair
from .errors import DSIRError
from .io import Stack, open_stack
from .localize import LocalizeParams
from .locs import Localizations
from .model import DSIRModel
from .progress import drive
from .reconstruct import (
    NonFinite,
    Progress,
    Result,
    bright_message,
    check_args,
    halo_message,
    iter_reconstruct,
    movie_noise_scale,
    network_input,
    non_finite_message,
)


def connect(address: str):
    """A dask.distributed ``Client`` for ``address``: a scheduler address
    (``tcp://host:8786``), or ``local`` / ``local:N`` for a cluster of N
    single-threaded worker processes on this machine (default: one per core)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as e:  # pragma: no cover - distributed is a dependency
        raise DSIRError("--scheduler needs dask.distributed: pip install \"napari-dsir[cluster]\" (or "
                        "pip install distributed)") from e
    if address == "local" or address.startswith("local:"):
        n = None
        if address.startswith("local:"):
            try:
                n = int(address.split(":", 1)[1])
            except ValueError:
                n = 0
            if n < 1:
                raise DSIRError(f"--scheduler {address!r}: give local:N with N >= 1 workers")
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster)
    try:
        return Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as e:
        raise DSIRError(f"cannot reach the dask scheduler at {address!r}: {e}") from e


def _read_stack_block(path: str, pixel_size, start: int, stop: int) -> np.ndarray:
    return open_stack(path, pixel_size=pixel_size).read(start, stop)


def frames_as_dask(data, chunk: int):
    """``data`` (a `Stack`, numpy or dask array) as a dask array (frame, y, x)
    chunked by ``chunk`` frames along the first axis only."""
    import dask
    import dask.array as da

    if isinstance(data, Stack):
        blocks = []
        for b in range(0, len(data), chunk):
            e = min(b + chunk, len(data))
            d = dask.delayed(_read_stack_block, pure=True)(str(data.path), data.pixel_size, b, e)
            blocks.append(da.from_delayed(d, (e - b,) + tuple(data.shape[1:]), data.dtype))
        return da.concatenate(blocks, axis=0)
    if not (hasattr(data, "ndim") and hasattr(data, "shape")):
        raise DSIRError(f"cannot reconstruct from {type(data).__name__}; give a Stack or an array")
    arr = data if hasattr(data, "dask") else da.from_array(np.asarray(data), chunks=(chunk, -1, -1))
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise DSIRError(f"expected frames (frame, y, x), got an array of shape {arr.shape}")
    return arr.rechunk((chunk, -1, -1))


class _Block:
    """Frames ``first:first+n`` of a movie, indexed with the movie's frame
    numbers (so that errors and localizations name the right frames)."""

    ndim = 3

    def __init__(self, frames: np.ndarray, first: int):
        self.frames, self.first = frames, first
        self.shape = (first + len(frames),) + frames.shape[1:]

    def __getitem__(self, key: slice) -> np.ndarray:
        return self.frames[key.start - self.first : key.stop - self.first]


class _DaskFrames:
    """The frames ``idx`` of a dask array in one compute (each block read
    once), for the noise-level sample."""

    def __init__(self, arr, first: int = 0):
        self.arr, self.first = arr, first  # arr[0] is the movie's frame ``first``

    def take(self, idx) -> np.ndarray:
        return np.asarray(self.arr[np.asarray(idx) - self.first].compute())


def reconstruct_block(frames: np.ndarray, model: DSIRModel, first_frame: int, pixel_size: float,
                      batch_size, localize: dict | None, tile, camera: dict | None = None,
                      fit_window: int | None = None, noise_scale: float | None = None, binning: int = 1,
                      echoes: bool = False, fit_sigma_nm: float | None = None, background_shape=None,
                      refine: bool = True):
    """One block on a worker: (sum image float64, localizations or None, fit
    status counts or None, the free fits' chi-square histogram or None, the
    bright objects and the detections left out around them, the NaN and
    infinite pixels replaced: `napari_dsir.reconstruct.NonFinite`)."""
    params = LocalizeParams(**localize) if localize is not None else None
    cam = Camera.from_dict(camera) if camera is not None else None
    res = drive(iter_reconstruct(_Block(np.asarray(frames), first_frame), model, pixel_size=pixel_size,
                                 batch_size=batch_size, localize=params, tile=tile, start=first_frame,
                                 camera=cam, fit_window=fit_window, noise_scale=noise_scale, binning=binning,
                                 echoes=echoes, fit_sigma_nm=fit_sigma_nm, background_shape=background_shape,
                                 refine=refine))
    return (res.sum_image.astype(np.float64), res.localizations, res.info.get("fit"), res.info.get("fit_chi2"),
            res.info["halos"], NonFinite(*res.info["non_finite"]))


def iter_reconstruct_distributed(
    data, model: DSIRModel, client, *, pixel_size: float, batch_size: int | None = None,
    start: int = 0, stop: int | None = None, localize: LocalizeParams | None = None,
    tile="auto", chunk: int = 256, camera: Camera | None = None, fit_window: int | None = None,
    binning: int = 1, echoes: bool = False, fit_sigma_nm: float | None = None, hot_pixels=None, pattern=None,
    background_shape=None, refine: bool = True, where: str | None = None,
) -> Generator:
    """`iter_reconstruct` on a dask.distributed ``client``; same yields
    (`Progress` per finished block) and the same `Result`. ``hot_pixels``:
    (n, 2) y, x repaired, and ``pattern`` (y, x ADU; None: none) subtracted,
    in every frame (`napari_dsir.defects.repair`);
    ``background_shape``, ``refine``, ``where`` (the name its warnings
    start with): see `iter_reconstruct`."""
    where = f"{where or data.path}: " if (where or isinstance(data, Stack)) else ""
    from dask.distributed import as_completed

    if int(chunk) < 1:
        raise DSIRError(f"chunk must be >= 1 frame, got {chunk}")
    arr = frames_as_dask(data, int(chunk))
    start, stop, batch_size = check_args(arr.shape[0], start, stop, batch_size, pixel_size, model, arr.shape[1:])
    arr = arr[start:stop].rechunk((int(chunk), -1, -1))
    hot = np.zeros((0, 2), np.int64) if hot_pixels is None else np.asarray(hot_pixels, np.int64).reshape(-1, 2)
    if len(hot) or pattern is not None:  # repaired on the workers, block by block
        arr = arr.map_blocks(repair, hot, pattern, dtype=np.result_type(arr.dtype, np.float32))
    u = int(model.upsampling)
    h, w = arr.shape[1:]
    total = stop - start
    model.net.eval()
    # one noise level for the whole movie (movie-normalised models), as in one process
    noise_scale, bright = movie_noise_scale(_DaskFrames(arr, start), model, start, stop, where, binning=binning,
                                            transform=network_input(camera, background_shape))
    echoes = echoes or bright > 1.0  # as in one process (`iter_reconstruct`)
    params = localize.validate().to_dict() if localize is not None else None
    remote_model = client.scatter(model, broadcast=True)
    firsts = start + np.concatenate([[0], np.cumsum(arr.chunks[0])[:-1]]).astype(int)
    todo = iter(zip(arr.to_delayed().ravel(), firsts, arr.chunks[0]))
    futures: dict = {}

    def submit():
        # a few blocks per worker in flight: cluster memory stays bounded
        # however long the movie
        nxt = next(todo, None)
        if nxt is None:
            return None
        blk, first, n = nxt
        fut = client.submit(reconstruct_block, client.compute(blk), remote_model, int(first),
                            float(pixel_size), batch_size, params, tile,
                            camera.to_dict() if camera is not None else None, fit_window, noise_scale,
                            binning, echoes, fit_sigma_nm, background_shape, refine, pure=False)
        futures[fut] = int(n)
        return fut

    n_workers = max(1, len(client.scheduler_info()["workers"]))
    pending = as_completed([f for f in (submit() for _ in range(2 * n_workers)) if f is not None])
    acc = np.zeros((h * u, w * u), np.float64)
    locs: list[Localizations] = []
    fit_counts: dict[str, int] = {}
    chi2_hist = None
    halos = [0, 0]
    non_finite = NonFinite()
    done = 0
    yield Progress(0, total, batch_size, f"reconstructing on {n_workers} workers", kind="start")
    try:
        if bright > 1.0:
            yield Progress(0, total, batch_size, bright_message(bright), kind="warning")
        for fut in pending:
            try:
                sum_image, block_locs, block_fit, block_chi2, block_halos, block_nf = fut.result()
            except DSIRError:
                raise
            except Exception as e:
                raise DSIRError(f"a dask worker failed: {type(e).__name__}: {e}") from e
            acc += sum_image
            if block_locs is not None:
                locs.append(block_locs)
            for k, v in (block_fit or {}).items():
                fit_counts[k] = fit_counts.get(k, 0) + v
            if block_chi2 is not None:
                chi2_hist = block_chi2 if chi2_hist is None else chi2_hist + block_chi2
            halos = [a + b for a, b in zip(halos, block_halos)]
            non_finite += block_nf
            done += futures.pop(fut)
            nxt = submit()
            if nxt is not None:
                pending.add(nxt)
            yield Progress(done, total, batch_size)
    finally:
        client.cancel(list(futures))
    if halos[0]:
        yield Progress(done, total, batch_size, halo_message(*halos), kind="warning")
    if non_finite.frames:
        yield Progress(done, total, batch_size, where + non_finite_message(non_finite), kind="warning")
    loc_table = None
    if localize is not None:
        loc_table = Localizations.concatenate(locs)
        order = np.argsort(loc_table.frame, kind="stable")
        loc_table = loc_table.select(order)
    return Result(
        sum_image=acc.astype(np.float32),
        pixel_size=float(pixel_size) / u,
        upsampling=u,
        start=start,
        stop=stop,
        localizations=loc_table,
        info={"batch_size": batch_size, "device": "dask", "model": model.source,
              "fit": fit_counts if camera is not None and localize is not None and refine else None,
              "fit_chi2": chi2_hist,
              "binning": binning, "noise_scale": noise_scale, "brightness_factor": bright,
              "halos": tuple(halos), "non_finite": tuple(non_finite),
              "scheduler": getattr(client, "scheduler", None) and str(client.scheduler.address)},
    )
