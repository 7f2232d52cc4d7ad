"""The ``dsir`` command line: simulate, train, reconstruct, localize, evaluate, render,
resolution, drift, filter, demo (the post-processing commands render, resolution, drift
and filter live in `cli_post`).

Progress bars go to stderr, results to stdout. Exit codes: 0 success; 2 usage
or bad input (one line naming the file and the problem); 1 anything
unexpected; 130 interrupted (Ctrl-C); 128 + the signal for SIGTERM and
SIGHUP, handled as Ctrl-C; 141 when stdout's reader went away.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

from . import __version__
from .errors import DSIRError, PixelSizeRequired

# --------------------------------------------------------------------------- helpers


def _range(text: str) -> tuple[float, float] | float:
    """'A' or 'A:B' -> A or (A, B)."""
    try:
        if ":" in text:
            a, b = text.split(":")
            return (float(a), float(b))
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or MIN:MAX, got {text!r}") from None


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {v}")
        return v

    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text!r}")
    return v


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless it says it already."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or not action.option_strings or action.default is None
                or isinstance(action.default, bool) or action.default == argparse.SUPPRESS):
            return text
        return text + " (default: %(default)s)"


def _warn(msg: str) -> None:
    print(f"dsir: warning: {msg}", file=sys.stderr)


def _progress_bar(total: int, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", file=sys.stderr, disable=quiet, dynamic_ncols=True)


def _inputs(args) -> list:
    """The files a run reads: the stack, the camera file, a checkpoint."""
    model = str(getattr(args, "model", None) or "")
    model = model[len("legacy:"):] if model.startswith("legacy:") else model
    return [args.stack, getattr(args, "camera", None), model if model and Path(model).is_file() else None]


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("stack", type=Path, help="multi-page TIFF or folder of single-frame TIFFs")
    p.add_argument("--model", default=None,
                   help="a shipped model by name (default: the fast network; wide: the same network wider, "
                        "closer positions in crowds, slower; dsir: the DSIR auto-encoder retrained), a checkpoint "
                        "(.pt), or legacy:PATH for an original DSIR file")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "gpu", "mps"])
    p.add_argument("--batch-size", type=_positive_int, default=None,
                   help="frames per batch (default on the CPU, where it is fastest: 8 for the fast network, "
                        "fewer for frames over 128x128 px, 1 above 256x256 px, so that the x8 grid stays "
                        "in memory; 1 for the DSIR auto-encoder; 32 on a GPU)")
    p.add_argument("--frames", default=None, help="START:STOP, 0-based, stop excluded (default: all)")
    p.add_argument("--pixel-size", type=_positive_float, default=None,
                   help="camera pixel size in nm (overrides the file; default 100 when the file has none)")
    p.add_argument("--upsampling", type=_positive_int, default=None,
                   help="up-sampling factor (default: the model's, 8)")
    p.add_argument("--binning", choices=["auto", "1", "2", "3", "4"], default="auto",
                   help="the network sees the frames binned NxN camera px (auto: 1 unless the PSF measured "
                        "on the movie is wider in pixels than the model's training and the binned frames are "
                        "not more crowded than it, which a warning says; the fits always use the camera's pixels)")
    p.add_argument("--keep-hot-pixels", action="store_true",
                   help="leave the camera's hot and dead pixels and its column and row offsets as they are "
                        "(default: those found on the movie, bright in most frames and not their neighbours, or the "
                        "same in every frame, are replaced by their neighbours' median, and columns or rows that "
                        "read above or below their neighbours in every frame have their offsets subtracted, which "
                        "a warning says)")
    p.add_argument("--tile", type=_nonnegative_int, default=None,
                   help="process frames larger than this many camera px in overlapping tiles "
                        "(same result, less memory; default 128; 0: never)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="spread the frames over a dask.distributed cluster: a scheduler address "
                        "(tcp://host:8786), or local[:N] for N worker processes on this machine")
    p.add_argument("--chunk", type=_positive_int, default=256,
                   help="frames per task with --scheduler (default 256)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _request(args, localize: bool, keep_frames: bool = False):
    """The `RunRequest` that the options ``args`` describe."""
    from .reconstruct import parse_frames
    from .run import RunRequest, open_source

    stack = open_source(args.stack)
    notes: list[str] = []
    start, stop = parse_frames(args.frames, len(stack), notes)
    for note in notes:
        _warn(f"{args.stack}: {note}")
    if args.scheduler and keep_frames:
        raise DSIRError("--frames-output cannot be used with --scheduler (the frames stay on the workers)")
    return RunRequest(
        stack, pixel_size=args.pixel_size, model=args.model, device=args.device, start=start, stop=stop,
        batch_size=args.batch_size, upsampling=args.upsampling,
        tile="auto" if args.tile is None else (args.tile or None), keep_frames=keep_frames,
        localize=localize, threshold=getattr(args, "threshold", None), radius=getattr(args, "radius", None),
        scheduler=args.scheduler, chunk=args.chunk, name=str(args.stack),
        refine=getattr(args, "refine", "none") == "mle", camera=_camera(args, getattr(stack, "camera_metadata", None)),
        binning=None if args.binning == "auto" else int(args.binning),
        hot_pixels=not getattr(args, "keep_hot_pixels", False),
    )


def _add_camera_options(g) -> None:
    """The camera options (a file, and single values over it) on group or parser ``g``."""
    g.add_argument("--camera", type=Path, default=None,
                   help="camera file (YAML: baseline, sensitivity, em_gain, qe, read_noise; Picasso's camera "
                        "config.yaml, read against the movie's Micro-Manager metadata; or a ThunderSTORM "
                        "protocol, such as the -protocol.txt of an earlier run)")
    g.add_argument("--baseline", type=float, default=None,
                   help="camera offset, ADU (default: the movie's metadata, else 100)")
    g.add_argument("--sensitivity", type=float, default=None,
                   help="photoelectrons per ADU (default: the movie's metadata, else 1)")
    g.add_argument("--em-gain", type=float, default=None,
                   help="EM gain, 1 for sCMOS/CCD (default: the movie's metadata, else 1)")
    g.add_argument("--qe", type=float, default=None,
                   help="quantum efficiency in (0, 1] (default: the movie's metadata, else 1)")
    g.add_argument("--read-noise", type=float, default=None,
                   help="read noise, e- rms (default: the movie's metadata, else 0)")


def _camera(args, stated: dict | None = None):
    """The camera the options give: a file, then single values over it (a
    `Camera`); single values alone (a dict: the run takes the others from
    the movie's metadata, else the defaults, `camera.given_over_stated`); or
    None when none is given (a run with the fits then uses the movie's
    metadata, else assumes defaults, with a warning; one without uses no
    camera). A Picasso camera configuration takes its entry and settings
    from the movie's metadata ``stated``. Impossible values are refused
    here, before the work."""
    from .camera import Camera

    values = {k: getattr(args, k, None) for k in ("baseline", "sensitivity", "em_gain", "qe", "read_noise")}
    values = {k: v for k, v in values.items() if v is not None}
    path = getattr(args, "camera", None)
    if path is None and not values:
        return None
    if path is None:
        Camera.from_dict(values)  # (validated: an impossible value refused before the work)
        return values
    base = Camera.from_yaml(path, stated, given=tuple(values)).to_dict()
    return Camera.from_dict({**base, **values}).validate()


def _run_reconstruction(args, localize: bool, keep_frames: bool = False):
    """Drive the one run path with a tqdm bar; warnings go to stderr."""
    from .progress import drive
    from .run import iter_run

    req = _request(args, localize, keep_frames)
    with _progress_bar(req.stop - req.start, "reconstructing", args.quiet) as bar:

        def show(p):
            if p.kind == "warning":
                bar.clear()
                _warn(p.message)
            elif p.kind == "start":
                bar.set_description(p.message)
            bar.n = p.done
            bar.refresh()

        return drive(iter_run(req), show)


# --------------------------------------------------------------------------- commands


def cmd_reconstruct(args) -> int:
    from .io import check_outputs, write_tiff
    from .io.files import outputs_together

    check_outputs([(args.output, "image"), (args.frames_output, "image")], _inputs(args), args.overwrite)
    res = _run_reconstruction(args, localize=False, keep_frames=args.frames_output is not None)
    with outputs_together():  # both or neither
        write_tiff(args.output, res.sum_image, res.pixel_size, overwrite=args.overwrite)
        if args.frames_output is not None:
            write_tiff(args.frames_output, res.frames, res.pixel_size, overwrite=args.overwrite)
    n = res.stop - res.start
    print(f"{args.output}\t{res.sum_image.shape[1]}x{res.sum_image.shape[0]} px of {res.pixel_size:g} nm, "
          f"{n} frame{'s' * (n != 1)} in {res.info['seconds']:.2f} s "
          f"({n / max(res.info['seconds'], 1e-9):.0f} frames/s)")
    return 0


def cmd_localize(args) -> int:
    from .io import check_outputs, write_tiff
    from .io.files import outputs_together
    from .io.tables import output_paths
    from .run import save_localizations

    table, *beside = output_paths(args.output)  # the table and what goes beside it (YAML, protocol)
    check_outputs([(table, "table"), *((b, None) for b in beside), (args.image, "image")], _inputs(args),
                  args.overwrite)
    res = _run_reconstruction(args, localize=True)
    with outputs_together():  # the table (and what goes beside it) and the image, or none
        save_localizations(res, args.output, overwrite=args.overwrite, warn=_warn)
        if args.image is not None:
            write_tiff(args.image, res.sum_image, res.pixel_size, overwrite=args.overwrite)
    print(f"{args.output}\t{len(res.localizations)} localizations in {res.stop - res.start} frames")
    from .fit import fit_summary

    report = res.info.get("fit_report")
    if report:  # (the camera check and the failed fits came as the run's warnings)
        print(fit_summary(report))
        if report["crowded"] or report["pulled"]:
            print(f"{report['crowded']} of {report['total']} detections have a neighbour closer than the isolation "
                  f"distance and {report['pulled']} were pulled away by light the fit did not model (an undetected "
                  "neighbour): they keep the network's position, with photons and uncertainty fitted there")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate, scored_frames
    from .io import read_localizations, read_picasso
    from .io.tables import HDF5_SUFFIXES, stated_frames

    gt = read_localizations(args.ground_truth, pixel_size=args.pixel_size, warn=_warn)
    if len(gt) == 0:
        raise DSIRError(f"{args.ground_truth}: the ground truth has no rows")
    if Path(args.localizations).suffix.lower() in HDF5_SUFFIXES:  # none: recall 0
        pred, steps = read_picasso(args.localizations, pixel_size=args.pixel_size, warn=_warn)
    else:
        pred, steps = read_localizations(args.localizations, pixel_size=args.pixel_size, warn=_warn), None
    # a run on part of a movie is scored on the frames it covered, as its table states them
    stated = stated_frames(args.localizations, steps)
    span, note = scored_frames(stated, pred, gt, str(args.localizations), base=1)  # (frames as the files count)
    if note:
        _warn(note)
    if span is not None:
        gt = gt.select((gt.frame >= span[0]) & (gt.frame < span[1]))
    radii = args.radius or [250.0, 100.0]
    metrics = [evaluate(gt, pred, r) for r in radii]
    if args.json:
        print(json.dumps({"ground_truth": str(args.ground_truth), "localizations": str(args.localizations),
                          "n_ground_truth": len(gt), "n_localizations": len(pred),
                          "frames": None if span is None else list(span),
                          "metrics": [m.to_dict() for m in metrics]}, indent=2))
    else:
        frames = "" if span is None else f" in frames {span[0] + 1}-{span[1]}" + (
            " (the frames the run covered)" if span == stated else "")
        print(f"{len(gt)} ground-truth positions, {len(pred)} localizations{frames}")
        for m in metrics:
            print(m.summary())
    return 0


def _sim_config(args):
    from .simulate import SimulationConfig

    return SimulationConfig(
        frame_size=(args.size[0], args.size[1]), pixel_size=args.sim_pixel_size, fwhm=args.fwhm,
        photons=args.photons, density=args.density, background=args.background,
        base_level=args.base_level, gain=args.gain, em_gain=args.em_gain, read_noise=args.read_noise, psf=args.psf,
    ).validate()


_SIM_DEFAULTS = {"sim_pixel_size": 100.0, "fwhm": (200.0, 300.0), "photons": (80.0, 2050.0), "density": 2.0,
                 "background": 20.0, "base_level": 100.0, "gain": 1.0, "em_gain": 1.0, "read_noise": 0.0,
                 "psf": "gaussian"}


def _add_sim_options(p: argparse.ArgumentParser, size_default=(26, 26)) -> None:
    g = p.add_argument_group("simulation (a number or MIN:MAX; defaults: the original DSIR preset)")
    d = _SIM_DEFAULTS
    g.add_argument("--size", type=_positive_int, nargs=2, default=list(size_default), metavar=("H", "W"),
                   help="frame size in px")
    g.add_argument("--sim-pixel-size", type=_positive_float, default=d["sim_pixel_size"], help="pixel size, nm")
    g.add_argument("--fwhm", type=_range, default=d["fwhm"], help="PSF FWHM, nm")
    g.add_argument("--photons", type=_range, default=d["photons"], help="photons per emitter")
    g.add_argument("--density", type=_range, default=d["density"], help="emitters per um^2")
    g.add_argument("--background", type=_range, default=d["background"], help="background, photons per px")
    g.add_argument("--base-level", type=_range, default=d["base_level"], help="camera offset, ADU")
    g.add_argument("--gain", type=_range, default=d["gain"],
                   help="ADU per electron read out (after an EMCCD's multiplication: an iXon's 4.8 e-/ADU is 0.208)")
    g.add_argument("--em-gain", type=_range, default=d["em_gain"],
                   help="EMCCD electron multiplication with its excess noise (1: sCMOS/CCD)")
    g.add_argument("--read-noise", type=float, default=d["read_noise"], help="read noise, e- rms")
    g.add_argument("--psf", choices=("gaussian", "airy"), default=d["psf"],
                   help="PSF shape: integrated Gaussian, or an in-focus objective's Airy pattern of that FWHM")


def cmd_simulate(args) -> int:
    from .io import check_outputs, write_localizations, write_tiff
    from .io.files import outputs_together
    from .io.tables import output_paths
    from .simulate import simulate

    positions = args.positions or args.output.with_suffix(".csv")
    table, *beside = output_paths(positions)  # the protocol (or YAML) beside it says it is ground truth
    check_outputs([(args.output, "image"), (table, "table"), *((b, None) for b in beside)],
                  overwrite=args.overwrite)
    cfg = _sim_config(args)
    frames, locs = simulate(args.n_frames, cfg, seed=args.seed)
    # the camera in the file, as acquisition software states it: runs on it use it (`io.Stack.camera_metadata`)
    with outputs_together():
        write_tiff(args.output, frames, cfg.pixel_size, overwrite=args.overwrite, dtype="uint16",
                   info=cfg.camera_info())
        write_localizations(positions, locs, overwrite=args.overwrite, intensity_unit="photon", warn=_warn,
                            metadata={"generator": f"napari-dsir {__version__}", "kind": "ground_truth",
                                      "frames": [0, args.n_frames], "simulation": args.output.name},
                            pixel_size=cfg.pixel_size, frame_shape=cfg.frame_size, n_frames=args.n_frames)
    print(f"{args.output}\t{args.n_frames} frames of {cfg.frame_size[1]}x{cfg.frame_size[0]} px")
    print(f"{positions}\t{len(locs)} emitters")
    return 0


def cmd_train(args) -> int:
    from .progress import drive
    from .train import TrainConfig, default_model_path, iter_train, last_path, show_epoch

    path = args.output or default_model_path()
    if args.output is None:  # the default place, ours to make on a fresh account
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    if Path(path).is_dir():
        raise DSIRError(f"{path}: a folder; give the checkpoint's file name (-o FOLDER/NAME.pt)")
    if Path(path).exists() and not (args.overwrite or args.resume):
        raise DSIRError(f"{path}: already exists (use --overwrite, or --resume to continue)")
    from .io import check_outputs

    stem = Path(path).stem  # its name, not the init's file; and the names beside it (lengths)
    check_outputs([(path, "checkpoint"), (Path(path).with_name(stem + ".previous.pt"), None),
                   (Path(path).with_name(stem + ".last.pt"), None)], [args.init], overwrite=True)
    logs = Path(args.log_dir) if args.log_dir else Path(path).parent
    log_csv = logs / f"{stem}_log.csv"  # (as iter_train names it)
    if logs.exists() and not logs.is_dir():
        raise DSIRError(f"--log-dir {logs}: a file, not a folder")
    if log_csv.is_file() and not (args.overwrite or args.resume):
        # e.g. another model of the same name logged to the same --log-dir
        raise DSIRError(f"{log_csv}: a training log is already there (use --overwrite to replace it, or give "
                        "another --log-dir or model name)")
    movies = None
    if args.movies:
        from .simulate import MovieConfig

        changed = [k for k, v in _SIM_DEFAULTS.items() if getattr(args, k) != v] + (
            ["size"] if tuple(args.size) != (26, 26) else [])
        if changed:
            raise DSIRError(f"--movies draws its own ranges (the shipped model's, see the model card); "
                            f"--{changed[0].replace('_', '-')} applies to single-frame training only")
        movies = MovieConfig(airy_fraction=args.movie_airy_fraction,
                             photons_max=args.movie_photons_max or MovieConfig.photons_max)
    elif args.movie_airy_fraction != 0.0 or args.movie_photons_max is not None or args.error_movies is not None:
        raise DSIRError("--movie-airy-fraction, --movie-photons-max and --movie-error-movies apply to --movies")
    if args.error_movies is not None and args.error_movies < 0:
        raise DSIRError(f"--movie-error-movies must be >= 0, got {args.error_movies}")
    _init_architecture(args)
    norm = args.normalization or ("movie" if movies is not None else "zscore")
    if args.kernel_width is None:
        args.kernel_width = 7 if args.arch == "shuffle" else 5
    cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        kernel_width=args.kernel_width, kernel_fwhm=args.kernel_fwhm, seed=args.seed,
        n_train=args.n_train, n_val=args.n_val, normalization=norm,
        encoder=tuple(args.encoder), decoder=tuple(args.decoder), head_norm=args.head_norm, head_relu=args.head_relu,
        simulation=_sim_config(args), arch=args.arch, channels=args.channels, context=args.context,
        movies=movies, lr_decay=args.lr_decay,
        init=args.init, device=args.device, png_every=args.png_every, label_scale=args.label_scale, l1=args.l1,
        **({} if args.error_movies is None else {"error_movies": args.error_movies}),
    )
    from tqdm import tqdm

    command = "dsir " + shlex.join(args.argv)
    # --overwrite: the checkpoint replaced keeps its place aside until the new
    # one is done (the run writes its best epoch to the path as it goes); one
    # kept there by an interrupted run stays (the path then holds that run's
    # unfinished epochs)
    previous = Path(path).with_name(Path(path).stem + ".previous.pt")
    moved = Path(path).is_file() and not args.resume and not previous.exists()
    if moved:
        os.replace(path, previous)
    if previous.is_file() and not args.resume:
        _warn(f"{path}: the finished checkpoint is kept as {previous.name} until this training finishes")
    last = last_path(Path(path))
    stale = last.stat().st_mtime_ns if last.is_file() else None  # a resume state from before this run
    began = time.time()
    gen = iter_train(cfg, path, resume=args.resume, log_dir=args.log_dir, metadata={"command": command})
    try:
        with tqdm(total=cfg.epochs, desc="training", unit="epoch", file=sys.stderr, disable=args.quiet) as bar:
            model = drive(gen, lambda log: show_epoch(bar, log))
    except BaseException as e:
        if moved and not Path(path).exists():  # refused, failed or stopped before any epoch: put it back
            os.replace(previous, path)
        if not isinstance(e, KeyboardInterrupt):
            if previous.is_file():
                print(f"dsir: the checkpoint this training was to replace is {previous}", file=sys.stderr)
            raise
        stopped = "terminated" if isinstance(e, Terminated) else "interrupted"
        if not last.is_file() or (not args.resume and last.stat().st_mtime_ns == stale):  # nothing saved yet
            # by this run to resume from (a resume state left by an earlier training is that training's)
            print(f"dsir: {stopped} before its training began (while its data were made); nothing to resume",
                  file=sys.stderr)
            return _exit_code(e)
        again = command if "--resume" in args.argv else f"{command} --resume"
        if args.output is None:  # the default path, named so that the command finds it again
            again += f" -o {shlex.quote(str(path))}"
        kept = f"; the checkpoint it was to replace is {previous}" if previous.is_file() else ""
        print(f"dsir: {stopped}; resume with: {again}{kept}", file=sys.stderr)
        return _exit_code(e)
    previous.unlink(missing_ok=True)
    jac = model.metadata.get("validation_jaccard_250nm")
    print(f"{path}\tvalidation Jaccard (250 nm) {jac:.3f}" if jac is not None else str(path))
    threshold = (model.metadata.get("localize") or {}).get("threshold")
    beside = [f"threshold {threshold:g} (calibrated, in the checkpoint)" if threshold is not None else None,
              *(f"{what} {f}" for what, f in (("log", log_csv), ("loss plot", logs / f"{stem}_loss.png"),
                                              ("resume state (for --resume with more --epochs)", last))
                if f.is_file() and f.stat().st_mtime >= began - 1)]  # (not an earlier training's)
    print("\n".join(f"  {line}" for line in beside if line))
    return 0


#: the defaults of the options that shape a new network (``--init`` fine-tunes its checkpoint's)
_TRAIN_SHAPE_DEFAULTS = {"channels": 24, "context": 32, "encoder": [16, 8, 8], "decoder": [8, 16, 8],
                         "head_norm": True, "head_relu": True}


def _init_architecture(args) -> None:
    """``args.arch`` and the network's shape (options given as None: not
    given): with ``--init``, those of the checkpoint fine-tuned (another
    --arch, or a shape option given, is refused: they were ignored, and the
    new checkpoint recorded them; a shipped model's name is its file); else
    ``dsir`` and the defaults unless given."""
    if args.init and not str(args.init).startswith("legacy:") and not Path(args.init).exists():
        from .model import SHIPPED_MODELS, default_model_path

        if str(args.init).lower() in SHIPPED_MODELS:  # --init default: the shipped file
            args.init = str(default_model_path(str(args.init).lower()))
    arch, shape = None, {}  # the checkpoint's network: its architecture and the options that shape it
    if args.init and str(args.init).startswith("legacy:"):
        arch, shape = "dsir", {"encoder": [16, 8, 8], "decoder": [8, 16, 8], "head_norm": True, "head_relu": True}
    elif args.init:
        from .model import load_checkpoint

        model = load_checkpoint(args.init)
        if model.legacy:
            raise DSIRError(f"{args.init}: an original DSIR file: fine-tune it with --init legacy:{args.init}")
        net = model.net
        arch = "shuffle" if hasattr(net, "context") else "dsir"
        shape = ({"channels": net.channels, "context": net.context} if arch == "shuffle" else
                 {"encoder": list(net.encoder_channels), "decoder": list(net.decoder_channels),
                  "head_norm": net.head_norm, "head_relu": net.head_relu})
    if arch is not None and args.arch not in (None, arch):
        raise DSIRError(f"--init {args.init} is a '{arch}' network: --arch {args.arch} cannot fine-tune it "
                        "(leave --arch out)")
    args.arch = arch or args.arch or "dsir"
    for name, default in _TRAIN_SHAPE_DEFAULTS.items():
        given = getattr(args, name)
        if name in shape and given is not None and (
                list(given) if isinstance(given, (list, tuple)) else given) != shape[name]:
            option = {"head_norm": "no-head-norm", "head_relu": "no-head-relu"}.get(name, name)
            raise DSIRError(f"--{option} shapes a new network; --init {args.init} fine-tunes its own "
                            f"({name} {shape[name]}): leave it out")
        # what the checkpoint records: the network trained
        setattr(args, name, shape[name] if name in shape else default if given is None else given)


def cmd_demo(args) -> int:
    from importlib import resources

    from .evaluate import evaluate
    from .figures import write_png
    from .io import read_localizations, write_localizations, write_tiff

    out = args.output_dir or Path(time.strftime("dsir_demo_%Y%m%d_%H%M%S"))
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise DSIRError(f"{out}: folder exists and is not empty (use --overwrite)")
    data = resources.files("napari_dsir") / "data"
    args.stack = Path(str(data / "sample_stack.tif"))
    args.frames = None
    args.pixel_size = None
    args.upsampling = None
    args.threshold = None
    args.radius = None
    args.tile, args.scheduler, args.chunk, args.binning = None, None, 256, "auto"
    # the sample's camera (docs/make_sample_data.py): 100 ADU offset, 1 e-/ADU
    args.refine, args.camera, args.baseline, args.sensitivity = "mle", None, 100.0, 1.0
    out.mkdir(parents=True, exist_ok=True)
    res = _run_reconstruction(args, localize=True)
    write_tiff(out / "sample_dsir.tif", res.sum_image, res.pixel_size, overwrite=True)
    write_png(out / "sample_dsir.png", res.sum_image)
    write_localizations(out / "sample_localizations.csv", res.localizations, overwrite=True)
    gt = read_localizations(Path(str(data / "sample_positions.csv")))
    print(f"output folder: {out.resolve()}")
    print(f"  sample_dsir.tif  super-resolved sum image, {res.sum_image.shape[1]}x{res.sum_image.shape[0]} px "
          f"of {res.pixel_size:g} nm")
    print("  sample_dsir.png  the same as a picture")
    print(f"  sample_localizations.csv  {len(res.localizations)} localizations (ThunderSTORM CSV)")
    for r in (250.0, 100.0):
        print("  vs ground truth, " + evaluate(gt, res.localizations, r).summary())
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dsir", description="Deep-learning super-resolution (DSIR) for SMLM movies.")
    ap.add_argument("--version", action="version", version=f"napari-dsir {__version__}")
    ap.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("reconstruct", formatter_class=_HelpFormatter,
                       help="super-resolved sum image of a stack")
    _add_common(p)
    p.add_argument("-o", "--output", type=Path, required=True, help="output TIFF (sum image)")
    p.add_argument("--frames-output", type=Path, default=None, help="also write the per-frame stack here")
    _add_camera_options(p.add_argument_group(
        "camera (optional: given, an uneven illumination measured on the movie in photons is taken out of the "
        "network's input)"))
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("localize", formatter_class=_HelpFormatter,
                       help="localization table of a stack (ThunderSTORM CSV, or Picasso .hdf5)")
    _add_common(p)
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output table: .csv (ThunderSTORM, with its -protocol.txt beside it) or .hdf5 "
                        "(Picasso, with a .yaml beside it)")
    p.add_argument("--image", type=Path, default=None, help="also write the sum image here")
    p.add_argument("--threshold", type=float, default=None,
                   help="peak threshold in network output units (default: the model's calibrated one)")
    p.add_argument("--radius", type=_positive_int, default=None,
                   help="local-maximum radius in super-resolved px (default: the model's, 2 for the shipped one)")
    g = p.add_argument_group("refinement and camera (photons, background, sigma, uncertainty)")
    g.add_argument("--refine", choices=["mle", "none"], default="mle",
                   help="mle: fit each detection on the raw frame (Poisson MLE, integrated Gaussian PSF); "
                        "none: the network's positions only (camera settings given still take an uneven "
                        "illumination out of the network's input)")
    _add_camera_options(g)
    p.set_defaults(func=cmd_localize)

    p = sub.add_parser("evaluate", formatter_class=_HelpFormatter,
                       help="Jaccard, recall, precision, RMSE, efficiency against ground truth")
    p.add_argument("ground_truth", type=Path)
    p.add_argument("localizations", type=Path)
    p.add_argument("--radius", type=_positive_float, action="append", default=None,
                   help="matching radius in nm (repeatable; default 250 and 100)")
    p.add_argument("--pixel-size", type=_positive_float, default=None, help="nm, for tables in px")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_evaluate, pixel_size_option="--pixel-size")

    p = sub.add_parser("simulate", formatter_class=_HelpFormatter,
                       help="simulate frames and ground truth (ThunderSTORM-like)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output TIFF stack")
    p.add_argument("--positions", type=Path, default=None, help="ground-truth CSV (default: OUTPUT.csv)")
    p.add_argument("-n", "--n-frames", type=_positive_int, default=100, help="number of frames")
    p.add_argument("--seed", type=int, default=0, help="random seed (the same seed gives the same movie)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("-q", "--quiet", action="store_true", help="accepted as by the other commands (no progress bar "
                                                              "to hide)")
    _add_sim_options(p, size_default=(64, 64))
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("train", formatter_class=_HelpFormatter,
                       help="train a model on simulated data")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="checkpoint path (default: a timestamped file in the user data folder)")
    p.add_argument("--epochs", type=_positive_int, default=100, help="passes over the training set")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="frames per training batch")
    p.add_argument("--lr", type=_positive_float, default=1e-4, help="Adam learning rate")
    p.add_argument("--weight-decay", type=float, default=1e-5, help="L2 weight decay")
    p.add_argument("--kernel-width", type=_positive_int, default=None,
                   help="width of the loss blur kernel, SR px (default: 5 for dsir, 7 for shuffle)")
    p.add_argument("--kernel-fwhm", type=_positive_float, default=3.0, help="FWHM of the loss blur kernel, SR px")
    p.add_argument("--seed", type=int, default=99, help="random seed of the simulation and the weights")
    p.add_argument("--n-train", type=_positive_int, default=3500, help="simulated training frames")
    p.add_argument("--n-val", type=_positive_int, default=1500, help="simulated validation frames")
    p.add_argument("--arch", choices=["dsir", "shuffle"], default=None,
                   help="dsir (default; with --init: the checkpoint's): the 2018 auto-encoder on the x8 up-sampled "
                        "frame; shuffle: camera-resolution features and a pixel-shuffle output (the shipped model's)")
    p.add_argument("--channels", type=_positive_int, default=None,
                   help="shuffle: channels at camera resolution (default 24; with --init: its own)")
    p.add_argument("--context", type=_positive_int, default=None,
                   help="shuffle: channels at half resolution (default 32; with --init: its own)")
    p.add_argument("--movies", action="store_true",
                   help="train on short movies drawn over wide ranges (densities 0-9 /um^2 with empty frames, "
                        "FWHM 170-370 nm, 120-10,000 photons, background 3-130, sCMOS and EMCCD cameras), "
                        "each normalised by its own noise level: the shipped model's data (its fine-tuning added "
                        "--movie-airy-fraction 0.3 --movie-photons-max 20000)")
    p.add_argument("--movie-airy-fraction", type=_fraction, default=0.0,
                   help="--movies: share of the movies whose PSF is an Airy pattern (rings) instead of a Gaussian")
    p.add_argument("--movie-photons-max", type=_positive_float, default=None,
                   help="--movies: most photons per emitter (default: the shipped model's first training, 10,000)")
    p.add_argument("--movie-error-movies", dest="error_movies", type=int, default=None, metavar="N",
                   help="--movies: movies simulated beyond the validation ones to measure the network's own "
                        "error where the refinement keeps its positions (default 1500; about 1 min per 1000 on "
                        "2 cores; 0: the validation movies only)")
    p.add_argument("--lr-decay", action="store_true", help="cosine decay of the learning rate to 5%%")
    p.add_argument("--normalization", choices=["zscore", "robust", "movie"], default=None,
                   help="input normalisation: per frame (zscore, robust) or by the movie's noise level "
                        "(movie; default with --movies, zscore otherwise)")
    p.add_argument("--encoder", type=_positive_int, nargs=3, default=None,
                   help="channels of the 3 encoder stages (default 16 8 8; with --init: its own)")
    p.add_argument("--decoder", type=_positive_int, nargs=3, default=None,
                   help="channels of the 3 decoder stages (default 8 16 8; with --init: its own)")
    p.add_argument("--no-head-norm", dest="head_norm", action="store_false", default=None,
                   help="no batch-norm before the final ReLU (the original has one)")
    p.add_argument("--no-head-relu", dest="head_relu", action="store_false", default=None,
                   help="linear output while training, clipped at 0 when applied (avoids dead outputs)")
    p.add_argument("--init", default=None,
                   help="checkpoint to fine-tune from (a shipped model's name; legacy:PATH: the original weights)")
    p.add_argument("--label-scale", type=_positive_float, default=1.0,
                   help="label value of one emitter (1: the original; 100 as Deep-STORM trains faster)")
    p.add_argument("--l1", type=float, default=0.0, help="weight of an L1 sparsity term on the output")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "gpu", "mps"])
    p.add_argument("--png-every", type=int, default=10, help="epochs between validation PNGs (0: never)")
    p.add_argument("--log-dir", type=Path, default=None,
                   help="folder of the CSV log and PNGs, made if missing (default: beside the model)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_sim_options(p)
    p.set_defaults(func=cmd_train)

    from .cli_post import add_parsers

    add_parsers(sub, _HelpFormatter)

    p = sub.add_parser("demo", formatter_class=_HelpFormatter,
                       help="reconstruct and localize the shipped sample with the shipped model")
    p.add_argument("-o", "--output-dir", type=Path, default=None, help="default: ./dsir_demo_<time>")
    p.add_argument("--model", default=None)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "gpu", "mps"])
    p.add_argument("--batch-size", type=_positive_int, default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
    return ap


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's flush at exit cannot fail again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a batch system's time limit, ``kill``, a closed
    terminal), raised where the command is, as Ctrl-C is: temporary files
    are removed and a training saves the state it resumes from."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM and SIGHUP raise `Terminated` for the duration (main thread only)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Terminated(signum)

    # a signal ignored (SIGHUP under nohup) stays ignored
    names = [n for n in ("SIGTERM", "SIGHUP")
             if hasattr(signal, n) and signal.getsignal(getattr(signal, n)) is not signal.SIG_IGN]
    before = {n: signal.signal(getattr(signal, n), stop) for n in names}
    try:
        yield
    finally:
        for n, handler in before.items():
            signal.signal(getattr(signal, n), handler)


def _exit_code(e: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 128 + the signal's number for `Terminated`."""
    return 128 + e.signum if isinstance(e, Terminated) else 130


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.getLogger("tifffile").setLevel(logging.ERROR)  # (what it logs of a bad file, the run says itself)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with warnings.catch_warnings(), _terminate_as_interrupt():
            warnings.simplefilter("ignore", UserWarning)
            rc = int(args.func(args) or 0)
            sys.stdout.flush()  # a closed pipe fails here, inside the handlers below
            return rc
    except DSIRError as e:
        msg = " ".join(str(e).split())
        if isinstance(e, PixelSizeRequired) and getattr(args, "pixel_size_option", None):
            msg += f" ({args.pixel_size_option} NM)"  # the option that gives it, which differs by command
        print(f"dsir: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print("dsir: terminated" if isinstance(e, Terminated) else "dsir: interrupted", file=sys.stderr)
        return _exit_code(e)
    except BrokenPipeError:
        # the reader went away (dsir ... | head): stop quietly, as Unix tools do
        _silence_stdout()
        return 141
    except Exception as e:  # noqa: BLE001 - the last resort of a CLI
        if args.debug:
            raise
        print(f"dsir: unexpected error: {type(e).__name__}: {e} (run with --debug for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
