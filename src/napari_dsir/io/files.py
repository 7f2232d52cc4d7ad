"""Writing outputs atomically: no partial file is ever left behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np
import tifffile

from ..errors import DSIRError

# --------------------------------------------------------------------------- outputs


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False):
    """Yield a temporary path beside ``path``; rename it into place on success.

    An existing ``path`` is refused unless ``overwrite``. On any error the
    temporary file is removed, so no partial output is ever left behind.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise DSIRError(f"{path}: already exists (use --overwrite to replace it)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise DSIRError(f"{path}: the folder {parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual mode
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno == 28:
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


