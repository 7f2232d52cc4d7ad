"""Localization table formats: ThunderSTORM CSV with every column, Picasso
HDF5 + YAML (layout checked with h5py and yaml; Picasso itself is not
installed here), and the vectorised parser's error messages."""

import json

import h5py
import numpy as np
import pytest
import yaml

from napari_dsir.errors import DSIRError, PixelSizeRequired
from napari_dsir.io import read_localizations, read_picasso, write_localizations
from napari_dsir.locs import OPTIONAL_COLUMNS, Localizations


def _full(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return Localizations(
        rng.integers(0, 30, n), rng.uniform(60, 6300, n), rng.uniform(60, 4700, n),
        intensity=rng.uniform(0, 5, n), photons=rng.uniform(100, 5000, n),
        background=rng.uniform(1, 50, n), sigma=rng.uniform(80, 200, n), uncertainty=rng.uniform(2, 30, n),
    )


def _assert_close(back, locs, atol=1e-3, columns=None):
    np.testing.assert_array_equal(back.frame, locs.frame)
    np.testing.assert_allclose(back.x, locs.x, atol=atol)
    np.testing.assert_allclose(back.y, locs.y, atol=atol)
    for c in columns or locs.columns():
        np.testing.assert_allclose(getattr(back, c), getattr(locs, c), rtol=1e-5, atol=atol, err_msg=c)


# ------------------------------------------------------------------ CSV


def test_thunderstorm_csv_with_every_column(tmp_path):
    locs = _full()
    p = write_localizations(tmp_path / "all.csv", locs)
    header = p.read_text().splitlines()[0]
    assert header == ('"id","frame","x [nm]","y [nm]","sigma [nm]","intensity [photon]","offset [photon]",'
                      '"bkgstd [photon]","uncertainty [nm]","uncertainty_xy [nm]","network intensity [a.u.]"')
    first = p.read_text().splitlines()[1].split(",")
    assert float(first[7]) == pytest.approx(np.sqrt(locs.background[0]), rel=1e-5)  # Poisson noise
    assert first[8] == first[9] == f"{locs.uncertainty[0]:.3f}"  # (ThunderSTORM 1.3's name: its rendering's)
    back = read_localizations(p)
    _assert_close(back, locs)
    assert set(back.columns()) == set(OPTIONAL_COLUMNS)


def test_bkgstd_is_the_background_noise_of_the_runs_camera(tmp_path):
    """ThunderSTORM's bkgstd (which its uncertainty formula reads) is the
    background's noise in photons for the camera the fits used: an EMCCD's
    excess noise doubles its variance, the read noise (referred to the
    input) adds to it, the QE divides it; it was sqrt(background) for every
    camera."""
    locs = Localizations(np.array([0]), np.array([100.0]), np.array([100.0]), background=np.array([50.0]))
    cameras = {"emccd": ({"em_gain": 100.0, "qe": 0.9, "read_noise": 100.0}, np.sqrt(2 * 50 * 0.9 + 1.0) / 0.9),
               "scmos": ({"sensitivity": 0.5, "read_noise": 1.5}, np.sqrt(50 + 1.5 ** 2)), "none": (None, np.sqrt(50))}
    for name, (camera, want) in cameras.items():
        p = write_localizations(tmp_path / f"{name}.csv", locs, metadata={"camera": camera})
        assert float(p.read_text().splitlines()[1].split(",")[5]) == pytest.approx(want, rel=1e-5), name


def test_csv_column_subsets_and_intensity_unit(tmp_path):
    base = _full(10)
    gt = Localizations(base.frame, base.x, base.y, intensity=base.photons)
    p = write_localizations(tmp_path / "gt.csv", gt, intensity_unit="photon")
    assert p.read_text().startswith('"id","frame","x [nm]","y [nm]","intensity [photon]"\n')
    back = read_localizations(p)
    _assert_close(back, gt)
    np.testing.assert_allclose(back.photons, gt.intensity, rtol=1e-5)  # ThunderSTORM's photons
    net = Localizations(base.frame, base.x, base.y, intensity=base.intensity, sigma=base.sigma)
    p = write_localizations(tmp_path / "net.csv", net)
    assert p.read_text().splitlines()[0] == '"id","frame","x [nm]","y [nm]","sigma [nm]","intensity [a.u.]"'
    back = read_localizations(p)
    _assert_close(back, net)
    assert back.photons is None and back.background is None and back.uncertainty is None
    bare = Localizations(base.frame, base.x, base.y)
    p = write_localizations(tmp_path / "bare.tsv", bare)
    assert p.read_text().splitlines()[0] == '"id"\t"frame"\t"x [nm]"\t"y [nm]"'
    assert read_localizations(p).columns() == {}


def test_nan_in_optional_columns_round_trips(tmp_path):
    locs = _full(6)
    locs.photons[2] = np.nan  # a failed fit
    locs.background[2] = np.nan
    back = read_localizations(write_localizations(tmp_path / "nan.csv", locs))
    assert np.isnan(back.photons[2]) and np.isnan(back.background[2])
    text = (tmp_path / "nan.csv").read_text()  # as Java writes it: ThunderSTORM's import parses NaN, not nan
    assert ",NaN," in text and "nan" not in text
    _assert_close(back.select(np.arange(6) != 2), locs.select(np.arange(6) != 2))
    locs.sigma[2] = locs.uncertainty[2] = np.nan  # a failed fit's row, in a Picasso file: 0 there, NaN back
    locs.background[3] = 0.0  # a background fitted to 0 stays 0
    back, _ = read_picasso(write_localizations(tmp_path / "nan.hdf5", locs, pixel_size=100.0, frame_shape=(64, 64)))
    for col in ("photons", "sigma", "uncertainty", "background"):
        assert np.isnan(getattr(back, col)[2]) and np.isfinite(getattr(back, col)[np.arange(6) != 2]).all(), col
    assert back.background[3] == 0.0
    _assert_close(back.select(np.arange(6) != 2), locs.select(np.arange(6) != 2))
    # an intensity is never written as 0 for NaN: a true 0 stays 0, with or without photons
    for photons in (None, np.array([100.0, 200.0])):
        net = Localizations([0, 1], [150.0, 250.0], [150.0, 250.0], intensity=[0.0, 5.0], photons=photons)
        back, _ = read_picasso(write_localizations(tmp_path / "i.hdf5", net, pixel_size=100.0, frame_shape=(8, 8),
                                                   overwrite=True))
        np.testing.assert_array_equal(back.intensity, [0.0, 5.0])


def test_plain_names_case_and_px_units(tmp_path):
    p = tmp_path / "plain.csv"
    p.write_text("FRAME,X [px],Y [px],Photons,BG,Sigma [px],Uncertainty_XY [nm]\n"
                 "1,1.5,2.5,1000,10,1.2,7\n3,4,5,,11,1.3,8\n")
    with pytest.raises(PixelSizeRequired):
        read_localizations(p)
    l = read_localizations(p, pixel_size=100)
    np.testing.assert_array_equal(l.frame, [0, 2])
    np.testing.assert_allclose(l.x, [150, 400])
    np.testing.assert_allclose(l.sigma, [120, 130])
    np.testing.assert_allclose(l.uncertainty, [7, 8])
    np.testing.assert_allclose(l.background, [10, 11])
    assert l.photons[0] == 1000 and np.isnan(l.photons[1])  # an empty cell is NaN
    np.testing.assert_allclose(l.intensity, l.photons)  # no other intensity: the photons


def test_a_table_in_px_takes_the_pixel_size_its_protocol_states(tmp_path):
    """A ThunderSTORM CSV in px beside its measurement protocol (its
    cameraSettings.pixelSize) is converted at that size, and the reader says
    so (it needed the pixel size given; napari assumed 100 nm while the
    layer's metadata said 160). A size given wins."""
    from napari_dsir.io.tables import read_table

    p = tmp_path / "ts.csv"
    p.write_text('"id","frame","x [px]","y [px]","sigma [px]","uncertainty_xy [px]"\n1.0,1.0,10.0,5.0,1.2,0.1\n')
    (tmp_path / "ts-protocol.txt").write_text('{"version": "ThunderSTORM (1.3-2014-11-08)", '
                                              '"cameraSettings": {"offset": 100.0, "pixelSize": 160.0}}')
    heard = []
    locs = read_localizations(p, warn=heard.append)
    assert (locs.x[0], locs.y[0], locs.sigma[0], locs.uncertainty[0]) == pytest.approx((1600, 800, 192, 16))
    assert heard == ["ts.csv: columns in pixels, converted at 160 nm per pixel, the camera pixel size that "
                     "ts-protocol.txt states"]
    heard.clear()
    assert read_table(p, 100.0, warn=heard.append)[0].x[0] == pytest.approx(1000) and heard == []
    (tmp_path / "ts-protocol.txt").write_text('{"cameraSettings": {"offset": 100.0}}')  # states none
    with pytest.raises(PixelSizeRequired):
        read_localizations(p)


def test_picassos_thunderstorm_export_is_told(tmp_path):
    """Picasso's "export ThunderSTORM" writes ids and frames from 0 and its
    own pixel centres: a file with a frame 0 is refused naming it (the
    message said only "not a 1-based frame number"), one without (linked or
    filtered localizations) is read with a warning (it was read one frame
    early and half a pixel off, silently)."""
    header = ("id,frame,x [nm],y [nm],sigma [nm],intensity [photon],offset [photon],bkgstd [photon],"
              "uncertainty_xy [nm]\n")
    p = tmp_path / "export.csv"
    p.write_text(header + "0,0,1537.07,1837.77,128.7,1085,15,0,9.945\n1,3,2000.0,1000.0,128.7,900,14,0,11.2\n")
    with pytest.raises(DSIRError, match="frame 0 is not a 1-based frame number .Picasso's ThunderSTORM export"):
        read_localizations(p)
    p.write_text(header + "0,1,1537.07,1837.77,128.7,1085,15,0,9.945\n1,3,2000.0,1000.0,128.7,900,14,0,11.2\n")
    heard = []
    assert read_localizations(p, warn=heard.append).frame.tolist() == [0, 2]
    assert len(heard) == 1 and "ids from 0, as Picasso's ThunderSTORM export writes them" in heard[0]
    p.write_text(header + "1,1,1537.07,1837.77,128.7,1085,15,0,9.945\n")  # ThunderSTORM's own: ids from 1
    heard.clear()
    read_localizations(p, warn=heard.append)
    assert heard == []
    p.write_text("frame,x [nm],y [nm],bkgstd [photon],uncertainty_xy [nm],id\n1,100,200,3,10\n")  # no id cells
    assert len(read_localizations(p, warn=heard.append)) == 1 and heard == []  # (an IndexError, briefly)


def test_a_3d_tables_z_is_said_to_be_left_out(tmp_path):
    """ThunderSTORM's and Picasso's 3-D tables carry z: napari-dsir is 2-D,
    and says z is not used (it was dropped with no word; a table written in
    its own format, dsir drift's or filter's, keeps it as it was)."""
    p = tmp_path / "3d.csv"
    p.write_text('"id","frame","x [nm]","y [nm]","z [nm]","sigma1 [nm]","sigma2 [nm]"\n1,1,100,200,-150,120,140\n')
    heard = []
    assert read_localizations(p, warn=heard.append).x.tolist() == [100.0]
    assert heard == ["3d.csv: its z column is not used (napari-dsir localizes, renders and scores in 2-D: x, y)"]
    rec = np.array([(0, 1.0, 2.0, -0.15)], dtype=[("frame", "<u4"), ("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    h5 = tmp_path / "3d.hdf5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("locs", data=rec)
    heard.clear()
    assert len(read_localizations(h5, pixel_size=100.0, warn=heard.append)) == 1
    assert heard == ["3d.hdf5: its z field is not used (napari-dsir localizes, renders and scores in 2-D: x, y)"]


def test_sigma_in_px_needs_the_pixel_size(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("frame,x [nm],y [nm],sigma [px]\n1,10,20,1.5\n")
    with pytest.raises(PixelSizeRequired, match="sigma"):
        read_localizations(p)
    assert read_localizations(p, pixel_size=160).sigma[0] == pytest.approx(240)


def test_a_header_without_rows_is_an_empty_table(tmp_path):
    """What a run that found nothing writes reads back as no localizations,
    with its columns (as an empty Picasso file does)."""
    p = tmp_path / "none.csv"
    write_localizations(p, Localizations(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), photons=np.zeros(0),
                                         uncertainty=np.zeros(0)))
    back = read_localizations(p)
    assert len(back) == 0 and back.photons is not None and len(back.uncertainty) == 0
    (tmp_path / "bare.csv").write_text("frame,x,y\n")
    assert len(read_localizations(tmp_path / "bare.csv")) == 0
    (tmp_path / "wrong.csv").write_text("frame,x\n")
    with pytest.raises(DSIRError, match="missing column"):
        read_localizations(tmp_path / "wrong.csv")


@pytest.mark.parametrize(
    "text, match",
    [
        ("frame,x,y\n1,2,3\n2,4,5\n3,x,6\n", "line 4: non-numeric"),
        ("frame,x,y\n1,2,3\n\n# comment\n2,nan,3\n", "line 5: NaN or infinite"),
        ("frame,x,y\n1,2,3\n2.5,1,1\n", "line 3: frame 2.5 is not a 1-based"),
        ("frame,x,y\n1,2,3\n2,3\n4,x,4\n", "line 3 has 2 column"),
        ("frame,x,y\n1,2,3\n2,x,4\n5,6\n", "line 3: non-numeric"),
        ("frame,x [nm],y [nm],sigma [nm]\n1,2,3,4\n1,2,3,abc\n", "line 3: non-numeric"),
        ("frame;x;y\n1;2;3\n0;1;1\n", "line 3: frame 0 is not"),
        ('frame,x,y\n1,"2",3\n1,2,"z"\n', "line 3: non-numeric"),
        ("frame x y\n1 2 3\n1 2\n", "line 3 has 2 column"),
        ("frame,x [px],y [px]\n1,1e308,3\n", "line 2: NaN or infinite"),
        ("\n\n# only comments\n", "empty"),
    ],
)
def test_first_bad_line_is_reported(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(DSIRError, match=match) as e:
        read_localizations(p, pixel_size=100)
    assert str(p) in str(e.value)


def test_binary_table_is_refused(tmp_path):
    p = tmp_path / "b.csv"
    p.write_bytes(b"frame,x,y\n\x00\x01\x02")
    with pytest.raises(DSIRError, match="binary"):
        read_localizations(p)


def test_large_table_round_trip_in_pieces(tmp_path):
    """More rows than one written piece (100,000): the pieces join up."""
    n = 250_001
    rng = np.random.default_rng(1)
    locs = Localizations(rng.integers(0, 1000, n), rng.uniform(0, 6400, n), rng.uniform(0, 6400, n),
                         intensity=rng.uniform(0, 10, n))
    p = write_localizations(tmp_path / "big.csv", locs)
    lines = p.read_text().splitlines()
    assert len(lines) == n + 1 and lines[-1].startswith(f"{n},")
    _assert_close(read_localizations(p), locs, columns=())


# ------------------------------------------------------------------ Picasso


def test_picasso_layout(tmp_path):
    locs = _full()
    p = write_localizations(tmp_path / "locs.hdf5", locs, pixel_size=100.0, frame_shape=(48, 64), n_frames=30,
                            metadata={"camera": {"baseline": 100.0, "sensitivity": 0.45, "em_gain": 1}})
    with h5py.File(p, "r") as f:
        rec = f["locs"][()]
        embedded = json.loads(f["metadata"][()])
    names = rec.dtype.names
    assert names[:9] == ("frame", "x", "y", "photons", "sx", "sy", "bg", "lpx", "lpy")
    assert rec.dtype["frame"] == np.uint32 and all(rec.dtype[n] == np.float32 for n in names[1:])
    np.testing.assert_array_equal(rec["frame"], locs.frame)  # 0-based
    np.testing.assert_allclose(rec["x"], locs.x / 100 - 0.5, atol=1e-4)  # px, centres at integers
    np.testing.assert_allclose(rec["y"], locs.y / 100 - 0.5, atol=1e-4)
    np.testing.assert_allclose(rec["photons"], locs.photons, rtol=1e-6)
    np.testing.assert_allclose(rec["sx"], locs.sigma / 100, rtol=1e-6)
    np.testing.assert_allclose(rec["sy"], locs.sigma / 100, rtol=1e-6)
    np.testing.assert_allclose(rec["bg"], locs.background, rtol=1e-6)
    np.testing.assert_allclose(rec["lpx"], locs.uncertainty / 100, rtol=1e-6)
    info = list(yaml.safe_load_all((tmp_path / "locs.yaml").read_text()))
    assert info == embedded
    assert info[0] == {"Frames": 30, "Height": 48, "Width": 64, "Pixelsize": 100.0}
    assert info[-1]["Generated by"].startswith("napari-dsir")
    assert info[-1]["Pixelsize"] == 100.0 and info[-1]["camera"]["sensitivity"] == 0.45


def test_picasso_photons_field_holds_photons_only(tmp_path):
    """A table without fits (``--refine none``) has the network's intensity
    (a.u.): it was written in Picasso's ``photons`` field, which Picasso
    users read as photon counts (medians of ~700 for ~4,600 true photons).
    It gets its own ``intensity`` field and ``photons`` is 0; a ground
    truth's intensity in photons stays Picasso's photons. Both read back."""
    net = Localizations(np.array([0, 1]), np.array([150.0, 250.0]), np.array([150.0, 250.0]),
                        intensity=np.array([3.5, 7.25]))
    p = write_localizations(tmp_path / "net.hdf5", net, pixel_size=100.0, frame_shape=(8, 8))
    with h5py.File(p, "r") as f:
        rec = f["locs"][()]
    assert (rec["photons"] == 0).all() and rec["intensity"].tolist() == [3.5, 7.25]
    back, _ = read_picasso(p)
    assert back.photons is None and back.intensity.tolist() == [3.5, 7.25]
    p = write_localizations(tmp_path / "gt.hdf5", net, pixel_size=100.0, frame_shape=(8, 8), intensity_unit="photon")
    with h5py.File(p, "r") as f:
        rec = f["locs"][()]
    assert rec["photons"].tolist() == [3.5, 7.25] and "intensity" not in rec.dtype.names
    assert read_picasso(p)[0].intensity.tolist() == [3.5, 7.25]


def test_picasso_writer_tells_of_the_rows_picasso_leaves_out(tmp_path):
    """Picasso's load_locs keeps x and y >= 0 of its pixels (centres at
    integers): a localization within half a pixel of the top or left edge is
    left out there (8 of 669 of a demo run, with no word); the writer says
    so, and napari-dsir reads them all."""
    locs = Localizations(np.array([0, 0, 1]), np.array([20.0, 500.0, 500.0]), np.array([500.0, 500.0, 49.0]))
    heard = []
    p = write_localizations(tmp_path / "edge.hdf5", locs, pixel_size=100.0, frame_shape=(8, 8), warn=heard.append)
    assert heard == [f"{p}: 2 of 3 localizations lie within half a camera pixel of the top or left edge (below 0 "
                     "of Picasso's pixel coordinates), outside the frame or hold NaN: Picasso's load_locs leaves them "
                     "out (napari-dsir reads them)"]
    assert len(read_picasso(p)[0]) == 3
    heard.clear()
    write_localizations(tmp_path / "inside.hdf5", locs.select(np.array([False, True, False])), pixel_size=100.0,
                        frame_shape=(8, 8), warn=heard.append)
    assert heard == []
    write_localizations(tmp_path / "beyond.hdf5", locs.select(np.array([False, True, False])), pixel_size=100.0,
                        frame_shape=(4, 4), warn=heard.append)  # x = 4.5 px of a frame 4 px wide
    assert len(heard) == 1 and ": 1 of 1 localizations" in heard[0]


def test_picasso_round_trip_every_column(tmp_path):
    locs = _full()
    p = write_localizations(tmp_path / "locs.h5", locs, pixel_size=107.0, frame_shape=(48, 64))
    back, info = read_picasso(p)
    _assert_close(back, locs, atol=2e-3)
    assert set(back.columns()) == set(OPTIONAL_COLUMNS)
    assert info[0]["Frames"] == locs.frame.max() + 1  # default: the last frame + 1
    assert len(read_localizations(p)) == len(locs)


def test_picasso_fallbacks_are_nan_free(tmp_path):
    base = _full(5)
    base.photons[1] = np.nan
    locs = Localizations(base.frame, base.x, base.y, photons=base.photons, sigma=base.sigma)
    p = write_localizations(tmp_path / "f.hdf5", locs, pixel_size=100.0, frame_shape=(64, 64))
    with h5py.File(p, "r") as f:
        rec = f["locs"][()]
    for n in rec.dtype.names:
        assert np.isfinite(rec[n]).all(), n
    assert rec["photons"][1] == 0 and (rec["bg"] == 0).all()
    ok = np.arange(5) != 1
    np.testing.assert_allclose(rec["lpx"][ok], (locs.sigma / 100 / np.sqrt(locs.photons))[ok], rtol=1e-5)
    assert rec["lpx"][1] == 0
    back, _ = read_picasso(p)
    assert back.background is None and back.uncertainty is None and back.intensity is None  # as written
    np.testing.assert_allclose(back.sigma, locs.sigma, rtol=1e-5)
    assert np.isnan(back.photons[1]) and np.isfinite(back.photons[ok]).all()  # as it was
    bare = Localizations([0, 1], [50.0, 150.0], [50.0, 150.0])
    p = write_localizations(tmp_path / "bare.hdf5", bare, pixel_size=100.0, frame_shape=(8, 8))
    with h5py.File(p, "r") as f:
        rec = f["locs"][()]
    assert rec.dtype.names == ("frame", "x", "y", "photons", "sx", "sy", "bg", "lpx", "lpy")
    assert (rec["photons"] == 0).all() and (rec["lpx"] == 0).all()
    np.testing.assert_allclose(rec["x"], [0.0, 1.0])  # pixel centres at integers


def test_a_missing_uncertainty_stays_missing_in_a_picasso_file(tmp_path):
    """A row without an uncertainty (NaN) but with photons and sigma was
    written with the bound sigma / sqrt(photons) (3.79 nm here) and read back
    as a measured uncertainty, inside an uncertainty filter. It is written as
    lpx = lpy = 0 (Picasso's own 'none'), said, and read back as NaN, out of
    the filter; lpx = lpy = 0 in any Picasso file is none."""
    from napari_dsir.filters import keep, parse_range

    locs = Localizations([0, 1, 2], [1000.0, 1100.0, 1200.0], [2000.0, 2050.0, 2100.0],
                         photons=[1000.0, 1000.0, 1000.0], sigma=[120.0, 120.0, 120.0],
                         uncertainty=[10.0, np.nan, 30.0])
    heard = []
    p = write_localizations(tmp_path / "u.hdf5", locs, pixel_size=100.0, frame_shape=(40, 40), warn=heard.append)
    with h5py.File(p, "r") as f:
        rec = f["locs"][()]
    assert rec["lpx"][1] == rec["lpy"][1] == 0
    assert heard == [f"{p}: 1 of 3 localizations have no uncertainty (lpx = lpy = 0, Picasso's 'none'): Picasso's "
                     "Gaussian rendering leaves them out or draws them at its minimum blur, and its filters keep "
                     "them as precise (napari-dsir reads them as missing)"]
    back, _ = read_picasso(p)
    assert np.isnan(back.uncertainty[1])
    np.testing.assert_allclose(back.uncertainty[[0, 2]], [10.0, 30.0], rtol=1e-6)
    mask, _ = keep(back, {"uncertainty": parse_range(":25", "uncertainty")})
    assert mask.tolist() == [True, False, False]
    with h5py.File(p, "r+") as f:  # as Picasso wrote it: no napari-dsir columns step
        del f["metadata"]
    yaml_text = (tmp_path / "u.yaml").read_text().split("---")[0]
    (tmp_path / "u.yaml").write_text(yaml_text)
    foreign, _ = read_picasso(p)
    assert np.isnan(foreign.uncertainty[1]) and np.isfinite(foreign.uncertainty[[0, 2]]).all()
    heard.clear()  # a table with no uncertainty at all: nothing to say (README: fits needed for Picasso's precision)
    write_localizations(tmp_path / "none.hdf5", Localizations([0], [500.0], [500.0]), pixel_size=100.0,
                        frame_shape=(8, 8), warn=heard.append)
    assert heard == []


def test_foreign_picasso_file(tmp_path):
    """A file as Picasso writes it: extra fields, yaml steps, sx != sy."""
    dt = [("frame", "<u4"), ("x", "<f4"), ("y", "<f4"), ("photons", "<f4"), ("sx", "<f4"), ("sy", "<f4"),
          ("bg", "<f4"), ("lpx", "<f4"), ("lpy", "<f4"), ("ellipticity", "<f4"), ("net_gradient", "<f4")]
    rec = np.array([(3, 10.0, 5.0, 1000, 1.0, 1.4, 10, 0.1, 0.2, 0.3, 500)], dtype=dt)
    p = tmp_path / "pic.hdf5"
    with h5py.File(p, "w") as f:
        f.create_dataset("locs", data=rec)
    (tmp_path / "pic.yaml").write_text(
        "Byte Order: <\nFrames: 10\nHeight: 32\nWidth: 32\n---\nGenerated by: Picasso Localize\n"
        "Pixelsize: 130\nROI: !!python/tuple [1, 2]\n")
    locs, info = read_picasso(p)
    assert locs.frame[0] == 3
    assert locs.x[0] == pytest.approx(10.5 * 130) and locs.y[0] == pytest.approx(5.5 * 130)
    assert locs.sigma[0] == pytest.approx(1.2 * 130)
    assert locs.uncertainty[0] == pytest.approx(np.sqrt((0.01 + 0.04) / 2) * 130, rel=1e-5)
    assert locs.photons[0] == 1000 and locs.background[0] == 10 and locs.intensity is None
    assert info[1]["ROI"] == [1, 2]  # a Python tag read as a plain value, never constructed
    (tmp_path / "pic.yaml").unlink()
    with pytest.raises(PixelSizeRequired):
        read_localizations(p)
    assert read_localizations(p, pixel_size=100).x[0] == pytest.approx(1050)


def test_picasso_yaml_with_numpy_numbers(tmp_path):
    """Picasso's ``yaml.dump_all`` writes a numpy number (a Pixelsize or
    Frames that was np.float64 / np.int64) as a Python tag of its dtype and
    bytes: read as the number (the file was refused: "Pixelsize [...] is not
    a positive number of nm"), never constructed; a big-endian one too."""
    import yaml

    rec = np.array([(0, 10.0, 5.0)], dtype=[("frame", "<u4"), ("x", "<f4"), ("y", "<f4")])
    p = tmp_path / "pic.hdf5"
    with h5py.File(p, "w") as f:
        f.create_dataset("locs", data=rec)
    steps = [{"Frames": np.int64(50), "Height": 32, "Width": 32},
             {"Generated by": "Picasso Localize", "Pixelsize": np.float64(117.0), "Gain": np.dtype(">f4").type(2.5)}]
    text = yaml.dump_all(steps, default_flow_style=False)  # as Picasso's save_locs
    assert "numpy" in text and "multiarray.scalar" in text
    (tmp_path / "pic.yaml").write_text(text)
    locs, info = read_picasso(p)
    assert locs.x[0] == pytest.approx(10.5 * 117.0)
    assert info[0]["Frames"] == 50 and info[1]["Pixelsize"] == 117.0 and info[1]["Gain"] == 2.5


@pytest.mark.parametrize("kwargs, match", [
    ({"frame_shape": (8, 8)}, "pixel size"),
    ({"pixel_size": 100.0}, "frame shape"),
    ({"pixel_size": -1.0, "frame_shape": (8, 8)}, "positive"),
    ({"pixel_size": 100.0, "frame_shape": (8, 8), "metadata": {"bad": object()}}, "cannot be written"),
])
def test_picasso_writer_needs_its_geometry(tmp_path, kwargs, match):
    p = tmp_path / "l.hdf5"
    with pytest.raises(DSIRError, match=match) as e:
        write_localizations(p, Localizations([0], [1.0], [1.0]), **kwargs)
    assert str(p) in str(e.value)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary file


def test_picasso_existing_yaml_is_not_overwritten(tmp_path):
    (tmp_path / "l.yaml").write_text("keep me")
    with pytest.raises(DSIRError, match="already exists"):
        write_localizations(tmp_path / "l.hdf5", Localizations([0], [1.0], [1.0]), pixel_size=100.0,
                            frame_shape=(8, 8))
    assert sorted(q.name for q in tmp_path.iterdir()) == ["l.yaml"]
    write_localizations(tmp_path / "l.hdf5", Localizations([0], [1.0], [1.0]), pixel_size=100.0,
                        frame_shape=(8, 8), overwrite=True)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["l.hdf5", "l.yaml"]


@pytest.mark.parametrize("case", ["text", "no_locs", "no_x", "missing"])
def test_bad_picasso_files(tmp_path, case):
    p = tmp_path / "bad.hdf5"
    if case == "text":
        p.write_text("not hdf5")
        match = "not a readable HDF5"
    elif case == "no_locs":
        with h5py.File(p, "w") as f:
            f.create_dataset("other", data=np.zeros(3))
        match = "no 'locs'"
    elif case == "no_x":
        with h5py.File(p, "w") as f:
            f.create_dataset("locs", data=np.zeros(2, dtype=[("frame", "<u4"), ("y", "<f4")]))
        match = "missing column"
    else:
        match = "no such file"
    with pytest.raises(DSIRError, match=match) as e:
        read_localizations(p, pixel_size=100)
    assert str(p) in str(e.value)


def test_intensity_equal_to_photons_is_written_once(tmp_path):
    base = _full(8)
    gt = Localizations(base.frame, base.x, base.y, intensity=base.photons, photons=base.photons)
    p = write_localizations(tmp_path / "gt.csv", gt, intensity_unit="photon")
    assert p.read_text().splitlines()[0] == '"id","frame","x [nm]","y [nm]","intensity [photon]"'
    _assert_close(read_localizations(p), gt)
    for locs, unit in ((gt, "a.u."), (Localizations(base.frame, base.x, base.y, intensity=base.intensity), "photon")):
        h5 = write_localizations(tmp_path / "l.hdf5", locs, pixel_size=100.0, frame_shape=(64, 64), overwrite=True,
                                 intensity_unit=unit)
        with h5py.File(h5, "r") as f:
            assert "intensity" not in f["locs"].dtype.names  # the photons field holds it
        back, _ = read_picasso(h5)
        _assert_close(back, locs)
        assert set(back.columns()) == set(locs.columns())


def test_the_protocol_keys_are_every_key_a_run_states():
    """`PROTOCOL_KEYS` (what napari's layer carries and File > Save writes
    again) holds every key `run_protocol` writes: a key added to one alone
    would be dropped from the files napari saves."""
    from napari_dsir.io.tables import PROTOCOL_KEYS, run_protocol
    from napari_dsir.reconstruct import Result

    res = Result(sum_image=np.zeros((16, 24), np.float32), pixel_size=12.5, upsampling=8, start=2, stop=7,
                 info={"background_shaped": True, "background_ratio": 1.5, "camera_pixel_size": 100.0,
                       "movie_frames": 9})
    stated = run_protocol(res)
    assert set(stated) - {"generator"} == set(PROTOCOL_KEYS)
    assert stated["frames"] == [2, 7] and stated["frame_shape"] == [2, 3] and stated["movie_frames"] == 9


def test_positions_over_an_image_keep_the_tables_warnings(tmp_path):
    """Review: a positions file in pixels, read at the image's pixel size
    (DSIR Ground Truth), lost the table's own warnings (a z column not used)."""
    from napari_dsir.io.tables import read_positions

    p = tmp_path / "px.csv"
    p.write_text('"frame","x [px]","y [px]","z [px]"\n1,10,12,3\n2,30,20,1\n')
    locs, from_px, said = read_positions(str(p), 160.0, "movie")
    np.testing.assert_allclose(locs.x, [1600.0, 4800.0])
    assert from_px and len(said) == 2 and "z column is not used" in said[0] and "160 nm" in said[1]
