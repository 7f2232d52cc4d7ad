"""``dsir render``, ``dsir resolution`` and ``dsir drift``: from a localization table
to a publishable image, its resolution and a drift-corrected table.

Each command reads a table (ThunderSTORM CSV, EPFL, plain ``frame,x,y`` or
Picasso HDF5), calls the Qt-free core (`render`, `resolution`, `drift`) and
writes its outputs atomically; plots are PNGs with labelled axes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NamedTuple

from .errors import DSIRError
from .locs import Localizations


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (v > 0 and v != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text!r}")
    return v


class _Table(NamedTuple):
    """A table read for a command: its localizations (nm), the movie a
    Picasso file describes (`io.picasso.movie_info`; for a text table the
    camera pixel size its protocol states and the frame (Height, Width px)
    where it states that too, else None) and a text
    table's (text, `io.tables.TableLayout`), for
    `io.positions.with_positions` to write a corrected copy of it without
    reading it again (None for a Picasso file)."""

    locs: Localizations
    movie: dict | None
    source: tuple | None


def _read(args) -> _Table:
    """The table ``args.localizations`` (`_Table`); refused when it holds no localization."""
    from .cli import _warn
    from .io import read_picasso
    from .io.picasso import movie_info
    from .io.tables import HDF5_SUFFIXES, protocol_path, protocol_pixel_size, read_table, stated_metadata, table_text

    path = Path(args.localizations)
    if path.suffix.lower() in HDF5_SUFFIXES:
        locs, steps = read_picasso(path, pixel_size=args.camera_pixel_size, warn=_warn)
        table = _Table(locs, movie_info(steps), None)
        stated, given = table.movie["pixel_size"], args.camera_pixel_size
        if stated is not None and given is not None and abs(stated - given) > 1e-9 * stated:
            _warn(f"{args.localizations} states its pixel size, {stated:g} nm; --camera-pixel-size {given:g} "
                  "is not used")
    else:
        text = table_text(path)
        stated, given = protocol_pixel_size(path), args.camera_pixel_size
        if stated is not None and given is not None and abs(stated - given) > 1e-9 * stated:
            _warn(f"{protocol_path(path)} states a camera pixel size of {stated:g} nm; --camera-pixel-size {given:g} "
                  "is used")
        locs, layout = read_table(path, given, warn=_warn, text=text)
        movie = None
        if stated is not None:  # the frame in camera pixels, as a Picasso file's Height and Width (of the
            # pixel size used: the one given over the protocol's, as for the positions)
            movie = {"pixel_size": given or stated,
                     "frame_shape": _frame_shape(stated_metadata(path).get("frame_shape")), "n_frames": None}
        table = _Table(locs, movie, (text, layout))
    if len(table.locs) == 0:
        raise DSIRError(f"{args.localizations}: the table has no localizations")
    return table


def _frame_shape(value) -> tuple[int, int] | None:
    """A stated camera frame (Height, Width) px, None where it is not two positive whole numbers."""
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError, OverflowError):
        return None
    return (h, w) if h > 0 and w > 0 and (h, w) == tuple(value) else None


def _refuse(args, outputs) -> None:
    """Refuse bad outputs before any work (`io.check_outputs`): ``outputs``
    (path, kind) pairs, the table read the input."""
    from .io import check_outputs

    check_outputs(outputs, [args.localizations], args.overwrite)


def cmd_render(args) -> int:
    from .cli import _warn
    from .io import write_tiff
    from .render import MODE_WORDS, has_uncertainty, outside_area, render, resolve_mode

    _refuse(args, [(args.output, "image")])
    locs, movie, source = _read(args)
    if args.mode == "gauss" and args.sigma is None:
        if locs.uncertainty is None:
            raise DSIRError(f"{args.localizations}: no uncertainty column to size the Gaussians; give --sigma NM")
        if not has_uncertainty(locs):
            raise DSIRError(f"{args.localizations}: no localization has an uncertainty (all fits failed?) to size "
                            "the Gaussians; give --sigma NM")
    # the area: --extent, else the camera's frame where the table states it
    # (a Picasso file, a CSV's protocol), else 0 to the largest position
    if args.extent is not None:
        area, where = {"extent": tuple(args.extent)}, "--extent"
    elif movie and movie["frame_shape"] and movie["pixel_size"]:
        (h, w), p = movie["frame_shape"], movie["pixel_size"]
        area = {"camera_shape": (h, w), "camera_pixel_size_nm": p}
        if source is not None:  # a text table: its protocol states it
            from .io.tables import protocol_path

            by = protocol_path(args.localizations)
        else:
            by = args.localizations
        where = f"the {w}x{h} px frame ({p:g} nm pixels) that {by} states"
    else:
        area, where = {}, "the image, from 0 nm to the largest position"
    out = outside_area(locs, args.pixel_size, **area)
    if out:  # what the area leaves out is said, not dropped in silence
        _warn(f"{out} of {len(locs)} localizations lie outside {where}, and are not drawn"
              + ("" if args.extent is not None else "; --extent Y0 X0 Y1 X1 (nm) sets the area"))
    mode = resolve_mode(locs, args.mode, args.sigma)
    img = render(locs, args.pixel_size, mode=mode, sigma_nm=args.sigma, by_frame=args.color_by_frame, **area)
    if args.color_by_frame:
        _write_rgb_tiff(args.output, img, args.pixel_size, args.overwrite)
    else:
        write_tiff(args.output, img, args.pixel_size, overwrite=args.overwrite)
    origin = "" if args.extent is None else f" from (x {args.extent[1]:g}, y {args.extent[0]:g}) nm"
    print(f"{args.output}\t{img.shape[1]}x{img.shape[0]} px of {args.pixel_size:g} nm{origin}, "
          f"{len(locs) - out} localization{'' if len(locs) - out == 1 else 's'} ({MODE_WORDS[mode]})")
    return 0


def _write_rgb_tiff(path, rgb, pixel_size: float, overwrite: bool) -> None:
    """An RGB (Y, X, 3) image in [0, 1] as an 8-bit TIFF carrying its pixel size."""
    import numpy as np
    import tifffile

    from .io import atomic_output

    data = np.clip(np.rint(np.asarray(rgb) * 255), 0, 255).astype(np.uint8)
    px_um = pixel_size / 1000.0
    with atomic_output(path, overwrite) as tmp:
        tifffile.imwrite(tmp, data, photometric="rgb", resolution=(1.0 / px_um, 1.0 / px_um), imagej=True,
                         metadata={"unit": "um", "axes": "YXS"})


def cmd_resolution(args) -> int:
    from .resolution import frc, nena

    _refuse(args, [(args.plot, "plot")])
    locs = _read(args).locs
    lines, failures = [], 0
    try:
        f = frc(locs, args.pixel_size, split=args.split, seed=args.seed, block_frames=args.block_frames)
        halves = {"odd_even": "odd and even frames", "blocks": f"blocks of {args.block_frames} frames",
                  "random": "random"}[args.split]
        lines.append(f"FRC resolution\t{f.resolution_nm:.1f} nm\t(halves: {halves}, 1/7 threshold, "
                     f"{args.pixel_size:g} nm pixels)")
        if args.plot is not None:
            from .figures import plot_curves

            plot_curves(args.plot, f.frequencies, {"FRC (smoothed)": f.curve, "FRC": f.raw},
                        xlabel="spatial frequency (1/nm)", ylabel="Fourier ring correlation",
                        title=f"FRC resolution {f.resolution_nm:.1f} nm", hlines={"1/7": f.threshold})
            lines.append(f"FRC curve\t{args.plot}")
    except DSIRError as e:
        failures += 1
        lines.append(f"FRC resolution\tn/a\t({e})")
    try:
        n = nena(locs)
        lines.append(f"NeNA precision\t{n.precision_nm:.1f} nm\t({n.n_pairs} next-frame pairs)")
    except DSIRError as e:
        failures += 1
        lines.append(f"NeNA precision\tn/a\t({e})")
    print("\n".join(lines))
    if failures == 2:
        raise DSIRError(f"{args.localizations}: neither FRC nor NeNA could be computed (see above)")
    return 0


def cmd_drift(args) -> int:
    from . import __version__
    from .drift import estimate_drift, write_drift_table
    from .io.files import outputs_together
    from .io.positions import outputs_beside, same_format, with_positions
    from .io.tables import output_paths

    table, *beside = output_paths(args.output, metadata=False)
    if same_format(args.localizations, table):  # beside it: the input's YAML or protocol, as it is copied
        beside = outputs_beside(args.localizations, table)
    _refuse(args, [(table, "table"), *((b, None) for b in beside), (args.drift_table, "drift table"),
                   (args.plot, "plot")])
    locs, movie, source = _read(args)  # (a text table's text kept for its corrected copy)
    if not same_format(args.localizations, table):
        _converted_pixel(args, table, movie)  # a Picasso output's pixels refused unknown before the drift
    drift = estimate_drift(locs, segments=args.segments, segment_frames=args.segment_frames,
                           pixel_size_nm=args.bin_size)
    corrected = drift.apply(locs)
    span = max(float(drift.x.max() - drift.x.min()), float(drift.y.max() - drift.y.min()))
    with outputs_together():  # the table, the drift table and the plot, or none
        if same_format(args.localizations, table):  # every other column kept
            step = {"Generated by": f"napari-dsir {__version__}",
                    "Drift correction": f"redundant cross-correlation of {len(drift.segment_frames)} segments",
                    "Drift span (nm)": round(span, 2)}
            from .cli import _warn

            with_positions(args.localizations, args.output, corrected, pixel_size=args.camera_pixel_size, step=step,
                           overwrite=args.overwrite, source=source, warn=_warn)
        else:
            _write_converted(args, table, corrected, movie)
        if args.drift_table is not None:
            write_drift_table(args.drift_table, drift, overwrite=args.overwrite)
        if args.plot is not None:
            from .figures import plot_curves

            plot_curves(args.plot, drift.frames + 1, {"x": drift.x, "y": drift.y}, xlabel="frame",
                        ylabel="drift (nm)", title="Estimated drift (subtracted from the positions)")
    print(f"{args.output}\t{len(corrected)} localizations corrected; drift spans {span:.1f} nm over "
          f"{len(drift.frames)} frames")
    return 0


def _converted_pixel(args, table: Path, movie: dict | None) -> float | None:
    """The camera pixel size (nm) of an output in another format than the
    input's: the one given, else the input's (`_Table.movie`); refused
    (`DSIRError`) where a Picasso output needs one and none is known."""
    from .io.tables import HDF5_SUFFIXES

    pixel = args.camera_pixel_size or (movie or {}).get("pixel_size")
    if table.suffix.lower() in HDF5_SUFFIXES and pixel is None:
        raise DSIRError(f"{table}: a Picasso file is in camera pixels; give their size with --camera-pixel-size NM")
    return pixel


def _write_converted(args, table: Path, locs: Localizations, movie: dict | None) -> None:
    """Write ``locs`` at ``args.output`` in another format than the input's
    (frame, x, y and the known columns only, as a warning says): a Picasso
    file in the camera pixels given, else the input Picasso file's
    (``movie``), else those the protocol beside an input CSV states; its
    frame the smallest that holds the positions where the input states none."""
    from .cli import _warn
    from .io import write_localizations
    from .io.picasso import smallest_frame
    from .io.tables import HDF5_SUFFIXES

    pixel = _converted_pixel(args, table, movie)
    _warn(f"{table}: a table in another format than the input's carries frame, x, y"
          f"{''.join(', ' + c for c in locs.columns())} only (give -o the input's extension to keep every column)")
    movie = movie or {}
    picasso = table.suffix.lower() in HDF5_SUFFIXES
    shape = movie.get("frame_shape") if movie.get("pixel_size") == pixel else None  # in the output's pixels
    if picasso and shape is None:
        shape = smallest_frame(locs, pixel)
    write_localizations(args.output, locs, overwrite=args.overwrite, pixel_size=pixel,
                        frame_shape=shape if picasso else None, n_frames=movie.get("n_frames"), warn=_warn)


def cmd_filter(args) -> int:
    from . import __version__
    from .filters import describe, keep, summary
    from .io.positions import outputs_beside, same_format, with_rows
    from .io.tables import output_paths

    ranges = {name: value for name in ("photons", "uncertainty", "sigma", "background", "intensity")
              if (value := getattr(args, name)) is not None}
    if not ranges:
        raise DSIRError("give at least one range to filter on (--photons, --uncertainty, --sigma, --background, "
                        "--intensity)")
    table, *beside = output_paths(args.output, metadata=False)
    if same_format(args.localizations, table):  # beside it: the input's YAML or protocol, as it is copied
        beside = outputs_beside(args.localizations, table)
    _refuse(args, [(table, "table"), *((b, None) for b in beside)])
    locs, movie, source = _read(args)
    mask, out = keep(locs, ranges, str(args.localizations))
    if same_format(args.localizations, table):  # every other column kept
        step = {"Generated by": f"napari-dsir {__version__}", "Filter": describe(ranges)}
        from .cli import _warn

        with_rows(args.localizations, args.output, mask, pixel_size=args.camera_pixel_size, step=step,
                  overwrite=args.overwrite, source=source, warn=_warn)
    else:
        _write_converted(args, table, locs.select(mask), movie)
    print(f"{args.output}\t{summary(mask, out, ranges)}")
    return 0


def add_parsers(sub, formatter_class) -> None:
    """Add ``render``, ``resolution``, ``drift`` and ``filter`` to the ``dsir`` subcommands."""

    def table_args(p):
        p.add_argument("localizations", type=Path, help="localization table (.csv, or Picasso .hdf5)")
        p.add_argument("--camera-pixel-size", type=_positive_float, default=None,
                       help="camera pixel size in nm, for tables in pixels")
        p.add_argument("--overwrite", action="store_true", help="replace existing outputs")

    p = sub.add_parser("render", formatter_class=formatter_class,
                       help="render localizations into an image (histogram or Gaussians)")
    table_args(p)
    p.add_argument("-o", "--output", type=Path, required=True, help="output TIFF (pixel size in its metadata)")
    p.add_argument("--pixel-size", type=_positive_float, default=10.0, help="rendered pixel size, nm")
    p.add_argument("--mode", choices=["auto", "hist", "gauss"], default="auto",
                   help="hist: counts per pixel; gauss: a Gaussian per localization (sized by --sigma or its "
                        "uncertainty); auto: gauss where the table has uncertainties or --sigma is given, else hist")
    p.add_argument("--sigma", type=_positive_float, default=None,
                   help="Gaussian sigma in nm (default: each localization's uncertainty)")
    p.add_argument("--color-by-frame", action="store_true", help="RGB image, hue = frame (time)")
    p.add_argument("--extent", type=float, nargs=4, metavar=("Y0", "X0", "Y1", "X1"), default=None,
                   help="the area rendered, nm (default: the camera frame a Picasso file or the protocol beside a "
                        "CSV states, else 0 to the largest position)")
    p.set_defaults(func=cmd_render, pixel_size_option="--camera-pixel-size")

    p = sub.add_parser("resolution", formatter_class=formatter_class,
                       help="FRC resolution and NeNA precision of a localization table")
    table_args(p)
    p.add_argument("--pixel-size", type=_positive_float, default=5.0, help="FRC image pixel size, nm")
    p.add_argument("--split", choices=["odd_even", "blocks", "random"], default="odd_even",
                   help="how the table is halved: its odd and even frames; blocks of --block-frames frames "
                        "assigned at random (Nieuwenhuizen et al. 2013: an emitter ON over consecutive frames "
                        "stays in one half; for movies of many blocks); or its localizations at random")
    p.add_argument("--block-frames", type=_positive_int, default=100,
                   help="frames per block of --split blocks (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random and blocks splits")
    p.add_argument("--plot", type=Path, default=None, help="write the FRC curve as a PNG")
    p.set_defaults(func=cmd_resolution, pixel_size_option="--camera-pixel-size")

    p = sub.add_parser("drift", formatter_class=formatter_class,
                       help="estimate drift (redundant cross-correlation) and correct a table")
    table_args(p)
    p.add_argument("-o", "--output", type=Path, required=True, help="corrected table (.csv or .hdf5)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--segments", type=int, default=10, help="number of time segments (default 10)")
    how.add_argument("--segment-frames", type=int, default=None,
                     help="frames per segment (instead of --segments)")
    p.add_argument("--bin-size", type=_positive_float, default=20.0, help="pixel size of the segment images, nm")
    p.add_argument("--drift-table", type=Path, default=None,
                   help="write the drift per frame (CSV: frame 1-based, x [nm], y [nm])")
    p.add_argument("--plot", type=Path, default=None, help="write the drift plot (PNG)")
    p.set_defaults(func=cmd_drift, pixel_size_option="--camera-pixel-size")

    p = sub.add_parser("filter", formatter_class=formatter_class,
                       help="keep the localizations whose photons, uncertainty, ... lie in given ranges")
    table_args(p)
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="filtered table (.csv or .hdf5; the input's format keeps every column)")
    for name, unit in (("photons", "photons"), ("uncertainty", "nm"), ("sigma", "nm"),
                       ("background", "photons per pixel"), ("intensity", "a.u.")):
        p.add_argument(f"--{name}", type=_filter_range, default=None, metavar="LO:HI",
                       help=f"keep {name} in LO..HI {unit}, ends included (LO: or :HI: open); NaN is out")
    p.set_defaults(func=cmd_filter, pixel_size_option="--camera-pixel-size")


def _filter_range(text: str):
    """An argparse type: `filters.parse_range` (argparse names the option)."""
    from .filters import parse_range

    try:
        return parse_range(text)
    except DSIRError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
