"""Writing outputs atomically: no partial file is ever left behind."""

from __future__ import annotations

import contextlib
import contextvars
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tifffile

from ..errors import DSIRError

# --------------------------------------------------------------------------- outputs

#: the extensions each kind of output is written as (the format follows
#: the name: a table named .tif would be a CSV under a TIFF's name)
OUTPUT_SUFFIXES = {
    "image": (".tif", ".tiff"),
    "table": (".csv", ".tsv", ".txt", ".hdf5", ".h5"),
    "drift table": (".csv",),
    "plot": (".png",),
    "checkpoint": (".pt", ".pth"),
}


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_outputs(outputs, inputs=(), overwrite: bool = False, probe: bool = True) -> None:
    """Refuse, before any work is done, the outputs that would lose data or
    come out in another format than their name says. ``outputs``: (path,
    kind) pairs, kind a key of `OUTPUT_SUFFIXES` (None: a file written
    beside another, such as a Picasso YAML; no extension test); None paths
    are skipped. ``inputs``: the paths the same command reads (files or
    folders of TIFFs). Refused: a wrong extension; one path for two
    outputs; an output that is an input, or a TIFF inside an input folder
    (the next run would read it as a frame); a folder; an existing file
    unless ``overwrite``; a name too long; a missing folder, or (``probe``:
    a file is created there and removed) one that cannot be written in."""
    seen: dict[Path, str] = {}
    inputs = [Path(i) for i in inputs if i is not None]
    for path, kind in outputs:
        if path is None:
            continue
        path = Path(path)
        if kind is not None and path.suffix.lower() not in OUTPUT_SUFFIXES[kind]:
            raise DSIRError(f"{path}: the {kind} is written as {' or '.join(OUTPUT_SUFFIXES[kind])}; "
                            "name the output so")
        parent = path.parent if str(path.parent) else Path(".")
        limit = _name_max(parent) if parent.is_dir() else 255
        if len(os.fsencode(path.name)) > limit:
            raise DSIRError(f"{path}: the file name is too long ({len(os.fsencode(path.name))} bytes; the folder "
                            f"takes {limit}): give a shorter one")
        key = path.resolve()
        if key in seen:
            raise DSIRError(f"{path}: named for two outputs ({seen[key]} and {kind or 'its companion file'}); "
                            "give each its own name")
        seen[key] = kind or "companion file"
        for src in inputs:
            if _same(path, src):
                raise DSIRError(f"{path}: is the input {src}; writing there would replace it (name the output "
                                "apart)")
            if src.is_dir() and key.parent == src.resolve() and path.suffix.lower() in OUTPUT_SUFFIXES["image"]:
                raise DSIRError(f"{path}: is inside the input folder {src}, whose TIFFs are the movie's frames "
                                "(write it elsewhere)")
        if path.is_dir():
            raise DSIRError(f"{path}: is a folder, not a file")
        if path.exists() and not overwrite:
            raise DSIRError(f"{path}: already exists (use --overwrite to replace it; Python: overwrite=True)")
        if not parent.is_dir():
            raise DSIRError(f"{path}: the folder {parent} does not exist")
        if probe:
            _check_writable(path, parent)


def _name_max(folder: Path) -> int:
    """The longest file name (bytes) the folder's file system takes."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def _check_writable(path: Path, parent: Path) -> None:
    """Refuse, before any work, an output whose folder cannot be written in
    (read-only, no permission): a file is created there and removed."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".dsir-", suffix=".probe", dir=parent)
    except OSError as e:
        raise DSIRError(f"{path}: cannot write in the folder {parent} ({e.strerror or e}): choose another "
                        "folder") from e
    with contextlib.suppress(OSError):
        os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _free_bytes(folder: Path) -> int | None:
    """Bytes free on the folder's device, or None where the system does not say."""
    try:
        return int(shutil.disk_usage(folder).free)
    except OSError:
        return None


def _temporary_prefix(name: str, name_max: int) -> str:
    """``.NAME.``, NAME cut so that the temporary name (mkstemp adds 8
    characters and ``.part``) stays within ``name_max`` bytes."""
    keep = os.fsencode(name)[: max(1, name_max - 16)]
    return "." + os.fsdecode(keep.decode("utf-8", "ignore").encode()) + "."


#: the (temporary, final) paths of the outputs written inside `outputs_together`
_PENDING: contextvars.ContextVar[list | None] = contextvars.ContextVar("napari_dsir_pending_outputs", default=None)


@contextlib.contextmanager
def outputs_together():
    """The outputs `atomic_output` writes inside are renamed into place
    together when the block ends, and none is if it fails or is
    interrupted: a run with several outputs (a table and its image, a
    corrected table and its drift table) never leaves some new and some as
    they were. A failure while renaming (rare) puts back the files renamed
    before it (the old ones are kept as hard links until all are renamed;
    on a file system without hard links, those renamed before it stay).
    Nested, the inner block joins the outer one. Threads start with their
    own context: a write from another thread renames at once."""
    if _PENDING.get() is not None:  # inside another: renamed with its outputs, at its end
        yield
        return
    pending: list[tuple[Path, Path]] = []
    token = _PENDING.set(pending)
    try:
        yield
        _rename_all(pending)
    finally:
        _PENDING.reset(token)
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)


def _keep_old(path: Path) -> Path | None:
    """A hard link to ``path``'s current file beside it (None: no file, or
    no hard links there)."""
    if not path.is_file():
        return None
    try:
        fd, old = tempfile.mkstemp(prefix=_temporary_prefix(path.name, _name_max(path.parent)), suffix=".old",
                                   dir=path.parent)
        os.close(fd)
        os.unlink(old)
        os.link(path, old)
    except OSError:
        return None
    return Path(old)


def _rename_all(pending: list[tuple[Path, Path]]) -> None:
    """Rename each (temporary, final) pair into place, popping it; on a
    failure, the finals renamed before it are put back as they were (an
    old file that cannot be put back stays beside it, named in the error)."""
    done: list[tuple[Path, Path | None, bool]] = []  # (final, its old file's link, it existed)
    kept: list[tuple[Path, Path]] = []  # (final, its old file's link) that could not be put back
    try:
        while pending:
            tmp, path = pending[0]
            existed = path.exists()
            old = _keep_old(path) if existed and len(pending) + len(done) > 1 else None
            try:
                os.replace(tmp, path)
            except OSError as e:
                if old is not None:
                    with contextlib.suppress(OSError):
                        old.unlink()
                raise DSIRError(f"{path}: cannot write ({e.strerror or e})") from e
            done.append((path, old, existed))
            pending.pop(0)
    except BaseException as err:
        for path, old, existed in reversed(done):
            try:
                if old is not None:
                    os.replace(old, path)
                elif not existed:
                    path.unlink()
            except OSError:
                if old is not None:
                    kept.append((path, old))
        if kept and isinstance(err, Exception):  # (an interruption stays one; the old files stay beside)
            raise DSIRError(f"{err}; the outputs written before it could not all be put back: "
                            + ", ".join(f"the old {p} is {o}" for p, o in kept)) from err
        raise
    finally:
        for _, old, _ in done:
            if old is not None and all(old != o for _, o in kept):
                with contextlib.suppress(OSError):
                    old.unlink()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False):
    """Yield a temporary path beside ``path``; rename it into place on success
    (inside `outputs_together`: with the others, at its end).

    An existing ``path`` is refused unless ``overwrite``. On any error the
    temporary file is removed, so no partial output is ever left behind.
    """
    path = Path(path)
    check_outputs([(path, None)], overwrite=overwrite, probe=False)  # exists, a folder, no folder (its own
    # temporary file below is the test of writing there)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path.name, _name_max(parent)), suffix=".part",
                                   dir=parent)
    except OSError as e:
        raise DSIRError(f"{path}: cannot write ({e.strerror or e})") from e
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual mode
    try:
        yield tmp
        pending = _PENDING.get()
        if pending is None:
            os.replace(tmp, path)
        else:  # renamed with the others at the end of `outputs_together`
            pending.append((tmp, path))
    except OSError as e:
        free = _free_bytes(parent) if e.errno is None else None  # numpy's short write names no cause:
        tmp.unlink(missing_ok=True)  # measured with the partial file still there
        if e.errno == 28 or (free is not None and free < (1 << 20)):
            raise DSIRError(f"{path}: no space left on the device") from e
        raise DSIRError(f"{path}: cannot write ({e.strerror or e})") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_tiff(
    path: str | os.PathLike, image: np.ndarray, pixel_size: float, overwrite: bool = False,
    dtype="float32", info: str | None = None,
) -> Path:
    """Write an image (y, x) or stack (frame, y, x) as an ImageJ TIFF that
    carries its pixel size (nm), atomically; ``info``: ImageJ's "Info" text
    (Fiji's Image > Show Info), e.g. the camera's settings."""
    data = np.asarray(image, dtype=dtype)
    px_um = pixel_size / 1000.0
    meta = {"unit": "um", "axes": "YX" if data.ndim == 2 else "TYX"}
    if info:
        meta["Info"] = info
    with atomic_output(path, overwrite) as tmp:
        tifffile.imwrite(
            tmp,
            data,
            imagej=True,
            resolution=(1.0 / px_um, 1.0 / px_um),
            metadata=meta,
        )
    return Path(path)


