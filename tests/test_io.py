import concurrent.futures
import gc
import json
import pickle

import numpy as np
import pytest
import tifffile

from napari_dsir.errors import DSIRError
from napari_dsir.io import (
    atomic_output,
    open_stack,
    read_localizations,
    write_localizations,
    write_tiff,
)
from napari_dsir.locs import Localizations

from .conftest import shared, split_ome


def _stack(rng, n=5, h=16, w=20):
    return rng.integers(90, 400, size=(n, h, w)).astype(np.uint16)


def test_multipage_tiff_lazy_and_imagej_pixel_size(tmp_path, rng):
    data = _stack(rng)
    p = tmp_path / "movie.tif"
    tifffile.imwrite(p, data, imagej=True, resolution=(1 / 0.16, 1 / 0.16), metadata={"unit": "um"})
    s = open_stack(p)
    assert s.shape == (5, 16, 20) and s.dtype == np.uint16
    assert s.pixel_size == pytest.approx(160.0)
    np.testing.assert_array_equal(s.read(1, 3), data[1:3])
    np.testing.assert_array_equal(s[4], data[4])
    np.testing.assert_array_equal(s[::2], data[::2])
    np.testing.assert_array_equal(s[::-2], data[::-2])
    np.testing.assert_array_equal(s[1:4, 2:5, -3:], data[1:4, 2:5, -3:])
    np.testing.assert_array_equal(s[2, 3], data[2, 3])
    assert s[3:1].shape == (0, 16, 20)
    batches = list(s.iter_batches(2))
    assert [b for b, _ in batches] == [0, 2, 4]
    np.testing.assert_array_equal(np.concatenate([a for _, a in batches]), data)


def test_compressed_tiff_is_read_page_by_page(tmp_path, rng):
    data = _stack(rng)
    p = tmp_path / "c.tif"
    tifffile.imwrite(p, data, compression="zlib")
    s = open_stack(p)
    assert s.pixel_size is None
    np.testing.assert_array_equal(s.read(2, 5), data[2:5])


@pytest.fixture
def tiff_counters(monkeypatch):
    """Count TiffFile opens (keeping each instance) and page/frame parses."""
    counts = {"open": 0, "parse": 0, "files": []}

    class CountingTiffFile(tifffile.TiffFile):
        def __init__(self, *a, **kw):
            counts["open"] += 1
            super().__init__(*a, **kw)
            counts["files"].append(self)

    for cls in (tifffile.TiffPage, tifffile.TiffFrame):
        real = cls.__init__

        def init(self, *a, _real=real, **kw):
            counts["parse"] += 1
            _real(self, *a, **kw)

        monkeypatch.setattr(cls, "__init__", init)
    monkeypatch.setattr(tifffile, "TiffFile", CountingTiffFile)
    return counts


def test_compressed_tiff_read_frame_by_frame_is_linear(tmp_path, rng, tiff_counters):
    """4,000 zlib frames read one at a time: the file is opened once for all
    reads and each read after the first parses a bounded number of pages (it
    used to reopen the file and parse all pages on every read: O(n^2))."""
    n = 4000
    data = rng.integers(0, 500, size=(n, 8, 8)).astype(np.uint16)
    p = tmp_path / "z.tif"
    tifffile.imwrite(p, data, compression="zlib")
    s = open_stack(p)
    assert s.shape == (n, 8, 8)
    opens0, parse0 = tiff_counters["open"], tiff_counters["parse"]
    per_read = []
    for i in range(n):
        before = tiff_counters["parse"]
        np.testing.assert_array_equal(s[i], data[i])
        per_read.append(tiff_counters["parse"] - before)
    assert tiff_counters["open"] - opens0 == 1
    assert per_read[0] <= n + 2  # the pages are indexed once, on the first read
    assert max(per_read[1:]) <= 2
    assert tiff_counters["parse"] - parse0 <= n + 2 * n
    fh = tiff_counters["files"][-1].filehandle
    assert not fh.closed
    s.close()
    assert fh.closed
    np.testing.assert_array_equal(s.read(3, 5), data[3:5])  # reopens after close
    assert tiff_counters["open"] - opens0 == 2
    s.close()


def test_compressed_stack_closes_its_file(tmp_path, rng, tiff_counters):
    data = _stack(rng, 6)
    p = tmp_path / "c.tif"
    tifffile.imwrite(p, data, compression="zlib")
    with open_stack(p) as s:
        np.testing.assert_array_equal(s.read(1, 4), data[1:4])
        fh = tiff_counters["files"][-1].filehandle
        assert not fh.closed
    assert fh.closed
    s = open_stack(p)
    s.read(0, 1)
    fh = tiff_counters["files"][-1].filehandle
    del s
    gc.collect()
    assert fh.closed  # the finalizer


def test_compressed_stack_pickles_and_reads_from_threads(tmp_path, rng):
    data = _stack(rng, 40)
    p = tmp_path / "c.tif"
    tifffile.imwrite(p, data, compression="zlib")
    s = open_stack(p)
    np.testing.assert_array_equal(s.read(0, 2), data[:2])  # open before pickling
    s2 = pickle.loads(pickle.dumps(s))
    np.testing.assert_array_equal(s2.read(5, 9), data[5:9])
    assert s2._read._tif is not s._read._tif  # each copy opens its own file
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda i: s[i], [i % 40 for i in range(200)]))
    for i, g in enumerate(got):
        np.testing.assert_array_equal(g, data[i % 40])
    np.testing.assert_array_equal(s.to_dask(7).compute(), data)
    s.close()
    s2.close()


def test_contiguous_and_folder_stacks_pickle(tmp_path, rng):
    data = _stack(rng, 4)
    p = tmp_path / "u.tif"
    tifffile.imwrite(p, data, photometric="minisblack")
    d = tmp_path / "seq"
    d.mkdir()
    for i, fr in enumerate(data):
        tifffile.imwrite(d / f"{i + 1:05d}.tif", fr)
    for path in (p, d):
        with open_stack(path) as s:
            np.testing.assert_array_equal(pickle.loads(pickle.dumps(s)).read(), data)


def test_corrupt_compressed_page_is_a_clear_error(tmp_path, rng):
    data = rng.integers(0, 500, size=(50, 16, 16)).astype(np.uint16)
    p = tmp_path / "t.tif"
    tifffile.imwrite(p, data, compression="zlib")
    with tifffile.TiffFile(p) as t:
        off, count = t.pages[30].dataoffsets[0], t.pages[30].databytecounts[0]
    blob = bytearray(p.read_bytes())
    blob[off:off + count] = b"\xff" * count  # frame 30 no longer inflates
    p.write_bytes(bytes(blob))
    with open_stack(p) as s:
        np.testing.assert_array_equal(s.read(0, 30), data[:30])
        with pytest.raises(DSIRError, match="corrupt or truncated") as e:
            s.read(25, 35)
        assert str(p) in str(e.value)
        np.testing.assert_array_equal(s[31], data[31])  # the file stays usable


def test_ome_pixel_size(tmp_path, rng):
    p = tmp_path / "m.ome.tif"
    tifffile.imwrite(p, _stack(rng), metadata={"axes": "TYX", "PhysicalSizeX": 0.107, "PhysicalSizeXUnit": "µm",
                                               "PhysicalSizeY": 0.107, "PhysicalSizeYUnit": "µm"})
    assert open_stack(p).pixel_size == pytest.approx(107.0)


OME_CAMERA = (
    '<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
    '<Instrument ID="Instrument:0"><Detector ID="Detector:0" Model="iXon" Offset="100" AmplificationGain="300" '
    'Gain="4.5"/></Instrument><Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" '
    'SizeX="20" SizeY="16" SizeZ="1" SizeC="1" SizeT="5" PhysicalSizeX="160" PhysicalSizeXUnit="nm">'
    '<Channel ID="Channel:0:0" SamplesPerPixel="1"><DetectorSettings ID="Detector:0" Offset="105"/></Channel>'
    '<TiffData/></Pixels></Image><StructuredAnnotations><MapAnnotation ID="Annotation:0"><Value>'
    '<M K="sensitivity">4.8</M><M K="Quantum efficiency">0.95</M></Value></MapAnnotation>'
    '</StructuredAnnotations></OME>')


def test_camera_settings_stated_in_the_file(tmp_path, rng):
    """Camera settings in OME-XML (the acquisition's offset before the
    detector's, the EM gain, key-value annotations), in ImageJ's Info lines
    and properties, and in tifffile's JSON description; a bare "Gain" (an
    sCMOS's analog gain for some vendors) and unrelated keys are not read."""
    from napari_dsir.camera import Camera

    ome = tmp_path / "cam.ome.tif"
    tifffile.imwrite(ome, _stack(rng), description=OME_CAMERA, metadata=None, photometric="minisblack")
    s = open_stack(ome)
    assert s.pixel_size == pytest.approx(160.0)
    assert s.camera_metadata == {"Offset": "105", "AmplificationGain": "300", "sensitivity": "4.8",
                                 "Quantum efficiency": "0.95"}
    assert Camera.from_metadata(s.camera_metadata) == Camera(105.0, 4.8, 300.0, 0.95)

    ij = tmp_path / "cam_ij.tif"
    tifffile.imwrite(ij, _stack(rng)[:, None, None], imagej=True, metadata={
        "Info": "Camera = sCMOS\nOffset = 400\nSensitivity: 0.5\nGain = 2\nread noise [e-]=1.6",
        "Properties": {"QE": "0.82"}})
    assert Camera.from_metadata(open_stack(ij).camera_metadata) == Camera(400.0, 0.5, 1.0, 0.82, read_noise=1.6)

    js = tmp_path / "cam_json.tif"
    tifffile.imwrite(js, _stack(rng), photometric="minisblack",
                     metadata={"baseline": 98, "em_gain": 50, "sensitivity": 12.5, "gain": 7, "note": "x"})
    assert open_stack(js).camera_metadata == {"baseline": 98, "em_gain": 50, "sensitivity": 12.5}

    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, _stack(rng))
    assert open_stack(plain).camera_metadata == {}
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(_stack(rng, 3)):
        tifffile.imwrite(folder / f"{i:03d}.tif", frame, metadata={"offset": 100 + i})
    assert open_stack(folder).camera_metadata == {"offset": 100}  # the first file's


#: Micro-Manager's image metadata (TIFF tag 51123): the camera device and its
#: properties among the other devices'
MM_IMAGE = {"Camera": "HamamatsuHam_DCAM", "Core-Camera": "HamamatsuHam_DCAM", "TIScope-State": "1",
            "PixelSizeUm": 0.108,
            "HamamatsuHam_DCAM-CONVERSION FACTOR COEFF": "0.4700",
            "HamamatsuHam_DCAM-CONVERSION FACTOR OFFSET": "100.0000", "HamamatsuHam_DCAM-Binning": "1x1",
            "HamamatsuHam_DCAM-Exposure": 30.0, "HamamatsuHam_DCAM-ROI": [0, 0, 8, 8]}


@pytest.mark.parametrize("version", ["1.4", "2.0"])
def test_micro_manager_camera_properties(tmp_path, rng, version):
    """Micro-Manager's camera device and its properties (1.4's flat values,
    2.0's {"PropVal": ...}) are kept, other devices' left out; the DCAM
    conversion factor among them is a stated camera, and PixelSizeUm the
    pixel size. Garbage in the tag is no metadata."""
    from napari_dsir.camera import Camera

    meta = MM_IMAGE if version == "1.4" else {k: {"PropVal": v, "PropType": "String"} for k, v in MM_IMAGE.items()}
    p = tmp_path / "mm.tif"
    tifffile.imwrite(p, _stack(rng), photometric="minisblack", extratags=[(51123, "s", 0, json.dumps(meta), False)])
    s = open_stack(p)
    assert s.camera_metadata == {"Camera": "HamamatsuHam_DCAM", "HamamatsuHam_DCAM-CONVERSION FACTOR COEFF": "0.4700",
                                 "HamamatsuHam_DCAM-CONVERSION FACTOR OFFSET": "100.0000",
                                 "HamamatsuHam_DCAM-Binning": "1x1", "HamamatsuHam_DCAM-Exposure": 30.0}
    assert Camera.from_metadata(s.camera_metadata) == Camera(100.0, 0.47, 1.0, 1.0)
    assert s.pixel_size == pytest.approx(108.0)  # PixelSizeUm
    bad = tmp_path / "bad.tif"
    tifffile.imwrite(bad, _stack(rng), photometric="minisblack", extratags=[(51123, "s", 0, "{not json", False)])
    assert open_stack(bad).camera_metadata == {}


def test_pixel_size_override(tmp_path, rng):
    p = tmp_path / "m.tif"
    tifffile.imwrite(p, _stack(rng))
    assert open_stack(p, pixel_size=80).pixel_size == 80
    with pytest.raises(DSIRError):
        open_stack(p, pixel_size=-1)


def test_singleton_axes_are_squeezed(tmp_path, rng):
    p = tmp_path / "tzcyx.tif"
    data = _stack(rng, 4)
    tifffile.imwrite(p, data[:, None, None], imagej=True)  # T=4, Z=1, C=1
    s = open_stack(p)
    assert s.shape == (4, 16, 20)
    np.testing.assert_array_equal(s.read(), data)


def test_single_2d_frame_is_one_frame(tmp_path, rng):
    p = tmp_path / "one.tif"
    tifffile.imwrite(p, _stack(rng, 1)[0])
    assert open_stack(p).shape == (1, 16, 20)


def test_folder_in_natural_order(tmp_path, rng):
    data = _stack(rng, 12)
    d = tmp_path / "sequence"
    d.mkdir()
    for i, fr in enumerate(data):
        tifffile.imwrite(d / f"frame{i + 1}.tif", fr)  # frame10 sorts after frame9
    (d / "notes.txt").write_text("not a frame")
    s = open_stack(d)
    assert s.shape == (12, 16, 20)
    np.testing.assert_array_equal(s.read(), data)


@pytest.mark.parametrize("names, note", [
    (["f1.tif", "f2.tif", "f4.tif", "f10.tif", "f11.tif", "f12.tif"],
     "numbered 1..12 with 6 missing (3, 5, 6, 7, 8, ...)"),
    (["t1700000000000000000.tif", "t1700000000000000007.tif"], None),  # nanosecond timestamps: not frame numbers
    (["f1.tif", "f2.tif", "f10.tif"], None),  # more missing than files: a stride or times
    (["img_0007.tif", "img_0008.tif", "img_0009.tif"], None),  # consecutive, from 7
    (["a1.tif", "b3.tif"], None),  # two series of names: not one numbering
    (["first.tif", "second.tif"], None),
])
def test_folder_numbering_gaps_are_noted(tmp_path, names, note):
    for n in names:
        tifffile.imwrite(tmp_path / n, np.zeros((8, 8), np.uint16))
    stack = open_stack(tmp_path)
    if note is None:
        assert stack.notes == ()
    else:
        assert len(stack.notes) == 1 and note in stack.notes[0]
        assert f"counted in order, 1 to {len(names)}" in stack.notes[0]


@pytest.mark.parametrize("odd", ["MAX_f.tif", "AVG_f001.tif"])
def test_folder_files_named_unlike_the_frames_are_left_out(tmp_path, odd):
    """Regression: a projection saved beside the frames was read as a frame
    (sorted first, every frame's number shifted by one) and hid the note of
    a missing frame; now it is left out, and said."""
    frames = np.arange(12 * 64, dtype=np.uint16).reshape(12, 8, 8)
    for i in range(12):
        if i != 5:
            tifffile.imwrite(tmp_path / f"f{i + 1:03d}.tif", frames[i])
    tifffile.imwrite(tmp_path / odd, frames.max(0))
    stack = open_stack(tmp_path)
    np.testing.assert_array_equal(stack.read(), np.delete(frames, 5, axis=0))
    assert len(stack.notes) == 2 and f"1 file whose name does not follow the frames' (f001.tif, ...) left out: {odd}" \
        in stack.notes[0] and "numbered 1..12 with 1 missing (6)" in stack.notes[1]
    # an unnumbered first frame beside numbered ones (img, img_1, ...; frame, frame (2), ...) is a frame
    for names in (["img.tif", "img_1.tif", "img_2.tif", "img_3.tif"],
                  ["frame.tif", "frame (2).tif", "frame (3).tif", "frame (4).tif"]):
        for f in tmp_path.iterdir():
            f.unlink()
        for i, n in enumerate(names):
            tifffile.imwrite(tmp_path / n, frames[i])
        assert len(open_stack(tmp_path)) == 4, names
    # Micro-Manager 1.4's names (the frame number inside, a position number last) are all frames
    for f in tmp_path.iterdir():
        f.unlink()
    for i in range(4):
        tifffile.imwrite(tmp_path / f"img_{i:09d}_Default_000.tif", frames[i])
    stack = open_stack(tmp_path)
    assert len(stack) == 4 and stack.notes == ()


def test_folder_frames_of_a_type_the_first_holds_are_read(tmp_path):
    tifffile.imwrite(tmp_path / "1.tif", np.full((8, 8), 1000, np.uint16))
    tifffile.imwrite(tmp_path / "2.tif", np.full((8, 8), 200, np.uint8))  # uint8 fits in uint16
    np.testing.assert_array_equal(open_stack(tmp_path).read()[:, 0, 0], [1000, 200])
    tifffile.imwrite(tmp_path / "3.tif", np.full((8, 8), 2.5, np.float32))
    with pytest.raises(DSIRError, match="3.tif: pixels of type float32 where 1.tif has uint16"):
        open_stack(tmp_path).read()


def test_acquired_channels_are_refused_and_stacks_tifffile_labels_channels_are_frames(tmp_path):
    """An OME-TIFF whose channels are named (as microscopes write them) is
    refused; tifffile labels any 3-D stack it writes without axes (OME or
    ImageJ) as bare channels, and those are a movie's frames."""
    data = np.zeros((2, 16, 16), np.uint16)
    ome = tmp_path / "two_colours.ome.tif"
    tifffile.imwrite(ome, data, ome=True, metadata={"axes": "CYX", "Channel": {"Name": ["Cy5", "Alexa 488"]}})
    with pytest.raises(DSIRError, match="2 channels .axes CYX"):
        open_stack(ome)
    for name, kw in (("bare.ome.tif", {}), ("ij.tif", {"imagej": True})):
        tifffile.imwrite(tmp_path / name, data, **kw)
        assert tifffile.TiffFile(tmp_path / name).series[0].axes == "CYX"
        assert open_stack(tmp_path / name).shape == (2, 16, 16)


@pytest.mark.parametrize("unit, value, nm", [("\u00c5", 1070.0, 107.0), ("pm", 160000.0, 160.0),
                                             ("nm", 65.0, 65.0)])
def test_ome_pixel_size_units(tmp_path, unit, value, nm):
    p = tmp_path / "m.ome.tif"
    tifffile.imwrite(p, np.zeros((3, 16, 16), np.uint16), ome=True,
                     metadata={"axes": "TYX", "PhysicalSizeX": value, "PhysicalSizeXUnit": unit})
    assert open_stack(p).pixel_size == pytest.approx(nm)


@pytest.mark.parametrize("kw", [{"resolution": (1 / 0.16, 1 / 0.16), "resolutionunit": "MICROMETER"},
                                {"resolution": (1e3 / 0.16, 1e3 / 0.16), "resolutionunit": "MILLIMETER"},
                                {"resolution": (1e4 / 0.16, 1e4 / 0.16), "resolutionunit": "CENTIMETER"},
                                {"resolution": (1 / 0.16, 1 / 0.16), "metadata": {"unit": "um"}}])
def test_tifffile_resolution_units(tmp_path, kw):
    """Regression: tifffile's micrometre and millimetre resolution units
    (TIFF tag values 5 and 4) and the unit of its own description were
    ignored: 160 nm pixels were taken as an assumed 100 nm (positions 0.625x)."""
    p = tmp_path / "m.tif"
    tifffile.imwrite(p, np.zeros((5, 16, 16), np.uint16), **kw)
    assert open_stack(p).pixel_size == pytest.approx(160.0)
    tifffile.imwrite(p, np.zeros((5, 16, 16), np.uint16), resolution=(1 / 0.16, 1 / 0.16))  # inch: no calibration
    assert open_stack(p).pixel_size is None


def test_pixels_that_are_not_square_are_noted(tmp_path, rng):
    """x's size is used for both axes, with a note that says so (OME,
    ImageJ resolution tags, and a folder of such frames); square pixels and
    a 1 % rounding give none."""
    ome = tmp_path / "m.ome.tif"
    tifffile.imwrite(ome, _stack(rng), metadata={"axes": "TYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.3})
    s = open_stack(ome)
    assert s.pixel_size == pytest.approx(100.0)
    assert len(s.notes) == 1 and "100 nm (x) by 300 nm (y)" in s.notes[0] and "uses 100 nm (x)" in s.notes[0]
    ij = tmp_path / "ij.tif"
    tifffile.imwrite(ij, _stack(rng), imagej=True, resolution=(1 / 0.16, 1 / 0.08), metadata={"unit": "um"})
    assert "160 nm (x) by 80 nm (y)" in open_stack(ij).notes[0]
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(2):
        tifffile.imwrite(folder / f"{i}.tif", _stack(rng, n=1)[0], imagej=True, resolution=(1 / 0.16, 1 / 0.08),
                         metadata={"unit": "um"})
    assert "160 nm (x) by 80 nm (y)" in open_stack(folder).notes[0]
    for y in (0.1, 0.1005):
        tifffile.imwrite(ome, _stack(rng), metadata={"axes": "TYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": y})
        assert open_stack(ome).notes == ()


@pytest.mark.parametrize("first", ["mean image", "thumbnail"])
def test_the_movie_beside_single_images_is_read_and_said(tmp_path, rng, first):
    """A TIFF whose first series is one image (a mean image, a preview) and
    the second the movie: the movie is read (every way), with a note."""
    data = _stack(rng)
    p = tmp_path / "m.tif"
    with tifffile.TiffWriter(p) as w:
        w.write(data.mean(0).astype(np.uint16) if first == "mean image" else data[0, :8, :8])
        w.write(data, compression="zlib")
    s = open_stack(p)
    assert s.shape == data.shape
    np.testing.assert_array_equal(s.read(), data)
    np.testing.assert_array_equal(s[3], data[3])
    assert len(s.notes) == 1 and "series 1, the only one with several frames, is read as the movie" in s.notes[0]
    with tifffile.TiffWriter(p) as w:  # uncompressed: read from its offset
        w.write(data[0])
        w.write(data)
    np.testing.assert_array_equal(open_stack(p)[1:4], data[1:4])


def test_a_movie_beside_a_preview_keeps_its_own_metadata_and_frames_written_one_by_one_are_a_movie(tmp_path, rng):
    """The pixel size is the movie's (its OME Image, its own tags), not the
    preview's; a colour preview is no movie; single grey images of one shape,
    each a series (a movie written a frame at a time with tifffile), are the
    frames (before: the first frame alone, silently)."""
    data = _stack(rng)
    ome = tmp_path / "preview.ome.tif"
    with tifffile.TiffWriter(ome, ome=True) as w:
        w.write(data[0, :8, :8], metadata={"axes": "YX", "PhysicalSizeX": 0.4, "PhysicalSizeY": 0.4})
        w.write(data, metadata={"axes": "TYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.1})
    assert open_stack(ome).pixel_size == pytest.approx(100.0)
    # an OME Image that tifffile leaves out (no planes in the file) shifts its series' numbering
    xml = tifffile.tiffcomment(ome)
    i = xml.index("<Image ")
    gone = ('<Image ID="Image:9"><Pixels ID="Pixels:9" DimensionOrder="XYCZT" Type="uint16" SizeX="64" SizeY="64" '
            'SizeC="1" SizeZ="1" SizeT="3" PhysicalSizeX="0.2" PhysicalSizeY="0.2"><Channel ID="Channel:9:0" '
            'SamplesPerPixel="1"/></Pixels></Image>')
    tifffile.tiffcomment(ome, xml[:i] + gone + xml[i:])
    assert len(tifffile.TiffFile(ome).series) == 2
    assert open_stack(ome).pixel_size == pytest.approx(100.0)  # before: 400, the preview's
    tags = tmp_path / "tags.tif"
    with tifffile.TiffWriter(tags) as w:
        w.write(data[0, :8, :8], resolution=(1 / 0.4, 1 / 0.4), resolutionunit="CENTIMETER")
        w.write(data, resolution=(1e4 / 0.16, 1e4 / 0.16), resolutionunit="CENTIMETER")
    assert open_stack(tags).pixel_size == pytest.approx(160.0)
    for rgb_first in (False, True):
        p = tmp_path / f"rgb{rgb_first}.tif"
        with tifffile.TiffWriter(p) as w:
            parts = [lambda: w.write(np.zeros((16, 16, 3), np.uint8), photometric="rgb"), lambda: w.write(data)]
            for write in parts[::-1] if not rgb_first else parts:
                write()
        np.testing.assert_array_equal(open_stack(p).read(), data)
    one_by_one = tmp_path / "frames.tif"
    with tifffile.TiffWriter(one_by_one) as w:
        for frame in data:
            w.write(frame)
    assert len(tifffile.TiffFile(one_by_one).series) == len(data)
    s = open_stack(one_by_one)
    assert s.shape == data.shape
    assert s.notes == ("the file holds 5 single images of 16x20 px, each a series (frames written one at a time): "
                       "read as 5 frames",)
    np.testing.assert_array_equal(s.read(), data)
    np.testing.assert_array_equal(s[2], data[2])
    snapshots = tmp_path / "positions.ome.tif"  # one image at each of 3 positions: no movie
    with tifffile.TiffWriter(snapshots, ome=True) as w:
        for pos in range(3):
            w.write(data[pos], metadata={"axes": "YX", "Name": f"Pos{pos}", "PhysicalSizeX": 0.1 * (pos + 1)})
    with pytest.raises(DSIRError, match="holds 3 image series .* several positions"):
        open_stack(snapshots)


def test_lzw_tiffs_as_pillow_writes_them_are_read(tmp_path, rng, monkeypatch):
    """LZW (Pillow's, Bio-Formats' exports) decodes through imagecodecs, a
    dependency; without it the message names the package, not a corrupt file."""
    from PIL import Image

    data = _stack(rng, n=4)
    p = tmp_path / "lzw.tif"
    frames = [Image.fromarray(f) for f in data]
    frames[0].save(p, save_all=True, append_images=frames[1:], compression="tiff_lzw")
    assert tifffile.TiffFile(p).pages[0].compression == tifffile.COMPRESSION.LZW
    np.testing.assert_array_equal(open_stack(p).read(), data)

    def no_codec(self, *a, **kw):
        raise ValueError("<COMPRESSION.LZW: 5> requires the 'imagecodecs' package")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", no_codec)
    with pytest.raises(DSIRError, match="compressed in a way that needs the imagecodecs package .* pip install"):
        open_stack(p).read()

def test_folder_frames_of_different_size(tmp_path, rng):
    d = tmp_path / "seq"
    d.mkdir()
    tifffile.imwrite(d / "00001.tif", _stack(rng, 1)[0])
    tifffile.imwrite(d / "00002.tif", _stack(rng, 1, 8, 8)[0])
    s = open_stack(d)
    with pytest.raises(DSIRError, match="00002.tif"):
        s.read()


@pytest.mark.parametrize("case", ["empty_folder", "not_tiff", "missing", "rgb"])
def test_bad_stacks(tmp_path, case, rng):
    if case == "empty_folder":
        p = tmp_path / "empty"
        p.mkdir()
    elif case == "not_tiff":
        p = tmp_path / "fake.tif"
        p.write_text("hello")
    elif case == "missing":
        p = tmp_path / "nope.tif"
    else:
        p = tmp_path / "rgb.tif"
        tifffile.imwrite(p, rng.integers(0, 255, (32, 32, 3)).astype(np.uint8), photometric="rgb")
    with pytest.raises(DSIRError) as e:
        open_stack(p)
    assert str(p) in str(e.value)


def test_epfl_sequence_folder():
    d = shared("bundled_tubes_hd", "sequence")
    s = open_stack(d)
    assert s.shape == (361, 64, 64)
    assert s.read(0, 1).mean() > 100  # camera baseline ~100 ADU


# ----------------------------------------------------------------------- tables


def test_thunderstorm_csv_round_trip(tmp_path):
    locs = Localizations([0, 0, 3], [10.5, 200.25, 3000.0], [5.0, 6.125, 7.0], [100.0, 200.0, 300.0])
    p = write_localizations(tmp_path / "l.csv", locs)
    text = p.read_text()
    assert text.startswith('"id","frame","x [nm]","y [nm]"')
    assert text.splitlines()[3].split(",")[1] == "4"  # 1-based frames in the file
    back = read_localizations(p)
    np.testing.assert_array_equal(back.frame, locs.frame)
    np.testing.assert_allclose(back.x, locs.x, atol=1e-3)
    np.testing.assert_allclose(back.y, locs.y, atol=1e-3)
    np.testing.assert_allclose(back.intensity, locs.intensity)


def test_existing_output_is_not_overwritten(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("keep me")
    with pytest.raises(DSIRError, match="already exists"):
        write_localizations(p, Localizations.empty())
    assert p.read_text() == "keep me"
    write_localizations(p, Localizations.empty(), overwrite=True)
    assert p.read_text() != "keep me"


def test_atomic_output_leaves_nothing_on_error(tmp_path):
    p = tmp_path / "out.tif"
    with pytest.raises(RuntimeError):
        with atomic_output(p) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("links", [True, False])
def test_outputs_renamed_together_are_put_back_when_one_rename_fails(tmp_path, monkeypatch, links):
    """Three outputs, the third's rename fails: the first (which existed)
    is put back as it was, the second (new) removed, nothing else left.
    Without hard links, the replaced first stays new; the new second goes."""
    import os

    from napari_dsir.io import files

    a, b, c = tmp_path / "a.csv", tmp_path / "b.tif", tmp_path / "c.csv"
    a.write_text("old a")
    c.write_text("old c")
    real_replace = os.replace
    if not links:
        monkeypatch.setattr(files.os, "link", lambda *x: (_ for _ in ()).throw(OSError(1, "Operation not permitted")))

    def replace(src, dst):
        if str(dst) == str(c):
            raise OSError(13, "Permission denied")
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    with pytest.raises(DSIRError, match="c.csv: cannot write"):
        with files.outputs_together():
            for p in (a, b, c):
                with atomic_output(p, overwrite=True) as tmp:
                    tmp.write_text("new")
    assert a.read_text() == ("old a" if links else "new") and c.read_text() == "old c"
    assert sorted(os.listdir(tmp_path)) == ["a.csv", "c.csv"]
    monkeypatch.setattr(files.os, "replace", real_replace)
    with files.outputs_together():  # and with no failure, all three new, no link left
        for p in (a, b, c):
            with atomic_output(p, overwrite=True) as tmp:
                tmp.write_text("new")
    assert [p.read_text() for p in (a, b, c)] == ["new"] * 3 and sorted(os.listdir(tmp_path)) == [
        "a.csv", "b.tif", "c.csv"]
    if links:  # an old file that cannot be put back stays beside it, named in the error
        a.write_text("old a")

        def no_way_back(src, dst):
            if str(dst) == str(c) or str(src).endswith(".old"):
                raise OSError(13, "Permission denied")
            return real_replace(src, dst)

        monkeypatch.setattr(files.os, "replace", no_way_back)
        with pytest.raises(DSIRError, match=r"could not all be put back: the old .*a\.csv is .*\.old"):
            with files.outputs_together():
                for p in (a, c):
                    with atomic_output(p, overwrite=True) as tmp:
                        tmp.write_text("newer")
        kept = [f for f in os.listdir(tmp_path) if f.endswith(".old")]
        assert len(kept) == 1 and (tmp_path / kept[0]).read_text() == "old a"


def test_epfl_2016_activations(tmp_path):
    p = tmp_path / "activations.csv"
    p.write_text(
        "Ground-truth, frame, xnano, ynano, znano, intensity\n"
        "     1,     1,   1500.5,   2500.25,    0.0,  3000\n"
        "     2,     3,    100.0,    200.0,     10.0,  1000\n"
    )
    l = read_localizations(p)
    np.testing.assert_array_equal(l.frame, [0, 2])
    np.testing.assert_allclose(l.x, [1500.5, 100.0])
    np.testing.assert_allclose(l.y, [2500.25, 200.0])


def test_plain_and_headerless_tables(tmp_path):
    a = tmp_path / "plain.csv"
    a.write_text("frame,x,y\n1,10,20\n2,30,40\n")
    b = tmp_path / "dsir_label.csv"
    b.write_text("1,10,20\n2,30,40\n")
    for p in (a, b):
        l = read_localizations(p)
        np.testing.assert_array_equal(l.frame, [0, 1])
        np.testing.assert_allclose(l.x, [10, 30])
        np.testing.assert_allclose(l.y, [20, 40])


@pytest.mark.parametrize("text, warned", [
    ("frame,x,y\n1,10.5,20\n2,63.9,40\n", True),  # unitless, within a 64-px camera: pixels?
    ("1,10.5,20\n2,63.9,40\n", True),  # no header
    ("frame,x,y\n1,10.5,20\n2,6390,40\n", False),  # a field of micrometres
    ("frame,x [nm],y [nm]\n1,10.5,20\n2,63.9,40\n", False),  # nm, as the header says
])
def test_unitless_positions_that_look_like_pixels_are_warned_of(tmp_path, text, warned):
    p = tmp_path / "t.csv"
    p.write_text(text)
    heard = []
    locs = read_localizations(p, warn=heard.append)
    assert locs.x.max() in (63.9, 6390)  # read as nm all the same
    assert len(heard) == int(warned)
    if warned:
        assert "within 63.9 nm" in heard[0] and "x [px]" in heard[0] and str(p) in heard[0]
    read_localizations(p)  # no warn given: silent


def test_a_header_written_as_a_comment_is_the_header(tmp_path):
    """numpy's savetxt(header=...) writes "# id,frame,x,y": its columns are
    taken by name, not by position; a comment above a header stays a comment."""
    p = tmp_path / "savetxt.csv"
    np.savetxt(p, [[7, 1, 150.5, 50.0], [8, 3, 300.0, 20.0]], delimiter=",", header="id,frame,x [nm],y [nm]",
               comments="# ")
    l = read_localizations(p)
    np.testing.assert_array_equal(l.frame, [0, 2])
    np.testing.assert_allclose(l.x, [150.5, 300.0])
    np.testing.assert_allclose(l.y, [50.0, 20.0])
    p.write_text("# x [px] y [px] frame\n1.5 2.5 1\n")
    with pytest.raises(DSIRError, match="pixel size"):
        read_localizations(p)
    p.write_text("# exported by a script, x and y in nm\nframe,x,y\n1,10,20\n")
    np.testing.assert_allclose(read_localizations(p).x, [10])
    p.write_text("# just a note\n1,10,20\n")  # no column names in the comment: headerless frame,x,y
    np.testing.assert_allclose(read_localizations(p).y, [20])


@pytest.mark.parametrize("name, text", [
    ("tab_comma_name.csv", 'frame\tx [nm]\ty [nm]\tcomment, misc\n1\t150.5\t50\tok\n'),
    ("tab_quoted.csv", 'frame\tx [nm]\ty [nm]\t"a, b; c"\n1\t150.5\t50\t1\n'),
    ("semicolon_comma_name.csv", 'frame;x [nm];y [nm];note, x\n1;150.5;50;1\n'),
    ("comma_in_tsv.tsv", 'frame\tx [nm]\ty [nm]\tnote,\n1\t150.5\t50\t1\n'),
    ("spaced_units.txt", "frame x [nm] y [nm] photons\n1 150.5 50 1000\n"),
])
def test_delimiters_and_names_that_hold_other_delimiters(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    l = read_localizations(p)
    np.testing.assert_allclose([l.frame[0], l.x[0], l.y[0]], [0, 150.5, 50])


def test_lines_end_only_at_newlines(tmp_path):
    """A form feed in a row or a Latin-1 ellipsis (0x85) in a comment is no line end."""
    p = tmp_path / "t.csv"
    p.write_bytes(b"# exported by me\x85 x in nm\nframe,x,y,note\n1,10,20,a\x0cb\n2,30,40,c\n")
    l = read_localizations(p)
    np.testing.assert_allclose(l.x, [10, 30])


def test_a_commented_header_over_rows_with_a_trailing_delimiter(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("# x,y,frame\n10,20,1,\n30,40,2,\n")
    l = read_localizations(p)
    np.testing.assert_array_equal(l.frame, [0, 1])
    np.testing.assert_allclose(l.x, [10, 30])


def test_a_utf16_table_is_read(tmp_path):
    p = tmp_path / "excel_unicode.txt"
    p.write_bytes("frame\tx [\u00b5m]\ty [\u00b5m]\r\n1\t0.15\t0.05\r\n".encode("utf-16"))
    l = read_localizations(p)
    np.testing.assert_allclose([l.x[0], l.y[0]], [150.0, 50.0])


def test_px_units_bom_crlf_semicolon(tmp_path):
    p = tmp_path / "px.csv"
    p.write_bytes("\ufeffFrame;X [px];Y [px]\r\n1;1.5;2.5\r\n".encode("utf-8"))
    with pytest.raises(DSIRError, match="pixel size"):
        read_localizations(p)
    l = read_localizations(p, pixel_size=100)
    np.testing.assert_allclose([l.x[0], l.y[0]], [150.0, 250.0])


@pytest.mark.parametrize(
    "text, match",
    [
        ("frame,x [nm]\n1,2\n", "missing column"),
        ("frame,x [furlong],y [furlong]\n1,2,3\n", "unknown unit"),
        ("frame,x,y\n1,abc,3\n", "non-numeric"),
        ("", "empty"),
        ("frame,x,y\n0,1,2\n", "1-based"),
    ],
)
def test_bad_tables(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(DSIRError, match=match) as e:
        read_localizations(p)
    assert str(p) in str(e.value)


def test_thunderstorm_demo_ground_truth():
    p = shared("thunderstorm_demo", "positions_demo1.csv")
    l = read_localizations(p)
    assert len(l) > 4000
    assert l.frame.min() == 0 and l.frame.max() == 19
    assert 0 <= l.x.min() and l.x.max() <= 6400


def test_write_tiff_carries_pixel_size(tmp_path):
    p = write_tiff(tmp_path / "sr.tif", np.ones((16, 16)), 12.5)
    s = open_stack(p)
    assert s.pixel_size == pytest.approx(12.5)
    assert s.dtype == np.float32


@pytest.mark.filterwarnings("error::UserWarning")
def test_an_ome_tiff_split_into_parts(tmp_path, rng):
    """Micro-Manager's OME-TIFF split into parts reads whole from its first
    file, every frame from its own part (no file reopened per frame:
    tifffile warns when it must); without a part, the open says which."""
    frames = (rng.integers(0, 4000, (9, 8, 8))).astype(np.uint16)
    first, second, third = split_ome(tmp_path, frames, parts=3)
    s = open_stack(first)
    assert s.shape == (9, 8, 8) and s.pixel_size == pytest.approx(100.0)
    assert s.name == "m_MMStack_Pos0"  # .ome.tif is one suffix
    np.testing.assert_array_equal(s.read(), frames)
    np.testing.assert_array_equal(s.read(4, 7), frames[4:7])
    s.close()
    third.unlink()
    with pytest.raises(DSIRError, match=r"3 of its 9 frames \(from 6\) are in m_MMStack_Pos0_2.ome.tif, not found"):
        open_stack(first)


def test_a_short_write_on_a_full_device_says_no_space(tmp_path, monkeypatch):
    """numpy's short write ("N requested and M written") names no cause: on a
    device with less than 1 MB free it is a full disk, and no file is left."""
    import shutil

    from napari_dsir.io import write_tiff

    def short_write(*a, **kw):
        raise OSError("262144 requested and 153512 written")

    monkeypatch.setattr(tifffile, "imwrite", short_write)
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DSIRError, match="sr.tif: no space left on the device"):
        write_tiff(tmp_path / "sr.tif", np.zeros((4, 4)), 100.0)
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: shutil._ntuple_diskusage(10**9, 0, 10**9))
    with pytest.raises(DSIRError, match=r"sr.tif: cannot write \(262144 requested and 153512 written\)"):
        write_tiff(tmp_path / "sr.tif", np.zeros((4, 4)), 100.0)
    assert list(tmp_path.iterdir()) == []
