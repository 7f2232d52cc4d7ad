import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared(*parts) -> Path:
    """Path inside ../shared/data; skips the test when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not available: {p}")
    return p


@pytest.fixture(scope="session", autouse=True)
def _at_most_two_torch_threads():
    """Tests share small CI machines: at most 2 intra-op threads (restored after)."""
    n = torch.get_num_threads()
    torch.set_num_threads(min(2, n))
    yield
    torch.set_num_threads(n)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """A small untrained napari-dsir checkpoint."""
    from napari_dsir.model import DSIRModel, DSIRNet, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, DSIRModel(DSIRNet((4, 4, 4), (4, 4, 4), head_norm=False)))
    return path


@pytest.fixture
def tiny_shuffle_checkpoint(tmp_path):
    """A small untrained checkpoint of the fast camera-resolution network."""
    from napari_dsir.model import DSIRModel, ShuffleNet, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path / "tiny_shuffle.pt"
    save_checkpoint(path, DSIRModel(ShuffleNet(4, 4), "shuffle", normalization="movie"))
    return path


def digest(path) -> object:
    """Content hash of a file, or of every file in a folder: inputs are never modified."""
    path = Path(path)
    if path.is_dir():
        return {p.name: digest(p) for p in sorted(path.iterdir())}
    return hashlib.sha256(path.read_bytes()).hexdigest()


def split_ome(folder, frames, parts=2):
    """An OME-TIFF in ``parts`` files, as Micro-Manager splits one beyond
    4 GB (NAME_MMStack_Pos0.ome.tif, NAME_MMStack_Pos0_1.ome.tif, ...): the
    first file's OME-XML maps the frames to every part by UUID and FileName."""
    import uuid

    n, h, w = frames.shape
    names = ["m_MMStack_Pos0.ome.tif"] + [f"m_MMStack_Pos0_{k}.ome.tif" for k in range(1, parts)]
    uuids = [f"urn:uuid:{uuid.UUID(int=k + 1)}" for k in range(parts)]
    chunks = np.array_split(np.arange(n), parts)
    data = "".join(f'<TiffData FirstT="{c[0]}" FirstZ="0" FirstC="0" IFD="0" PlaneCount="{len(c)}">'
                   f'<UUID FileName="{name}">{u}</UUID></TiffData>' for c, name, u in zip(chunks, names, uuids))
    for c, name, u in zip(chunks, names, uuids):
        xml = ('<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" '
               f'UUID="{u}"><Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint16" '
               f'SizeX="{w}" SizeY="{h}" SizeC="1" SizeZ="1" SizeT="{n}" PhysicalSizeX="0.1" PhysicalSizeY="0.1">'
               f'<Channel ID="Channel:0:0" SamplesPerPixel="1"/>{data}</Pixels></Image></OME>')
        with tifffile.TiffWriter(folder / name) as tw:
            for i, frame in enumerate(frames[c]):
                tw.write(frame, photometric="minisblack", description=xml if i == 0 else None, contiguous=False,
                         metadata=None)
    return [folder / name for name in names]


def make_bad_stack(tmp_path: Path, case: str) -> Path:
    """A stack file or folder for the bad-input catalogue (CLI and napari)."""
    p = tmp_path / f"{case}.tif"
    if case == "not_a_tiff":
        p.write_text("this is a text file named .tif\n")
    elif case == "truncated":
        tifffile.imwrite(p, np.ones((10, 32, 32), np.uint16), photometric="minisblack")
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif case == "truncated_imagej":  # tifffile falls back to the one page it can read: one frame, silently
        tifffile.imwrite(p, np.ones((12, 32, 32), np.uint16), imagej=True)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif case == "truncated_compressed":  # a zlib stack cut in half: 10 of 20 pages readable, read as 1 frame
        tifffile.imwrite(p, np.random.default_rng(0).integers(0, 1000, (20, 32, 32), np.uint16), compression="zlib")
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif case == "zero_frames":
        with pytest.warns(UserWarning):
            tifffile.imwrite(p, np.zeros((0, 16, 16), np.uint16))
    elif case == "rgb":
        tifffile.imwrite(p, np.zeros((32, 32, 3), np.uint8), photometric="rgb")
    elif case == "5d":
        tifffile.imwrite(p, np.zeros((2, 3, 4, 16, 16), np.uint16), imagej=True)
    elif case in ("nan", "inf"):
        a = np.full((3, 16, 16), 100.0, np.float32)
        a[1, 3, 3] = np.nan if case == "nan" else np.inf
        tifffile.imwrite(p, a, photometric="minisblack")
    elif case == "complex":
        tifffile.imwrite(p, np.ones((3, 16, 16), np.complex64), photometric="minisblack")
    elif case == "empty_folder":
        p = tmp_path / "empty"
        p.mkdir()
    elif case == "ome_part_missing":  # Micro-Manager's split OME-TIFF without its second part
        folder = tmp_path / "acquisition"
        folder.mkdir()
        p, second = split_ome(folder, np.full((6, 16, 16), 100, np.uint16))
        second.unlink()
    elif case == "multi_position":  # two movies in one OME-TIFF (a multi-position acquisition)
        with tifffile.TiffWriter(p, ome=True) as w:
            for pos in range(2):
                w.write(np.full((4, 16, 16), 100 + pos, np.uint16), metadata={"axes": "TYX", "Name": f"Pos{pos}"})
    elif case == "mixed_sizes":
        # frame 2 of 5 differs: not among the first, middle and last frames,
        # so only a check of every size finds it
        p = tmp_path / "mixed"
        p.mkdir()
        for i in range(5):
            tifffile.imwrite(p / f"{i + 1:05d}.tif", np.ones((16, 24 if i == 1 else 16), np.uint16))
    elif case == "mixed_types":
        # frame 3 of 5 is uint16 where the first is uint8: its 300 would wrap to 44
        p = tmp_path / "mixed_types"
        p.mkdir()
        for i in range(5):
            tifffile.imwrite(p / f"{i + 1:05d}.tif", np.full((16, 16), 300 if i == 2 else 100,
                                                             np.uint16 if i == 2 else np.uint8))
    elif case == "folder_of_text":
        p = tmp_path / "texts"
        p.mkdir()
        (p / "00001.tif").write_text("not a tiff")
    else:
        raise ValueError(case)
    return p


def one_emitter_stack(n=3, size=24, yx=(1160.0, 1243.0), photons=3000.0, noise=True, seed=0, dtype=np.uint16,
                      pixel_size=100.0):
    """Frames (frame, y, x) with one isolated Gaussian emitter at ``yx`` nm
    (origin: the corner of pixel (0, 0)), on a 100 ADU background."""
    yy, xx = np.mgrid[0:size, 0:size]
    cy, cx = yx[0] / pixel_size - 0.5, yx[1] / pixel_size - 0.5  # pixel-index coordinates of the centre
    spot = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 1.3**2))
    mean = 100.0 + photons * spot / spot.sum()
    frames = np.repeat(mean[None], n, 0)
    if noise:
        frames = np.random.default_rng(seed).poisson(frames)
    return frames.astype(dtype)


class Peaky(torch.nn.Module):
    """A stand-in network: the (up-sampled, normalised) input itself, so the
    output peaks where the emitter is, with no trained weights needed;
    ``delay`` seconds per call."""

    def __init__(self, delay: float = 0.0):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.delay = delay

    def forward(self, x):
        if self.delay:
            time.sleep(self.delay)
        return torch.relu(x) * self.w


@pytest.fixture
def notes():
    """Every napari notification shown during the test: (severity, message)."""
    from napari.utils.notifications import notification_manager

    got: list[tuple[str, str]] = []

    def on(event):
        got.append((str(event.severity), str(event.message)))

    notification_manager.notification_ready.connect(on)
    yield got
    notification_manager.notification_ready.disconnect(on)
