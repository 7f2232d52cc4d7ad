"""napari_dsir.filters and `dsir filter`: keep the localizations whose columns lie in ranges."""

import math

import h5py
import numpy as np
import pytest

from napari_dsir.cli import main
from napari_dsir.errors import DSIRError
from napari_dsir.filters import describe, keep, parse_range, summary
from napari_dsir.io import read_localizations, read_picasso, write_localizations
from napari_dsir.locs import Localizations


def _locs():
    return Localizations(np.arange(5), np.arange(5) * 100.0 + 50, np.full(5, 300.0),
                         photons=np.array([100.0, 600.0, 2000.0, np.nan, 900.0]),
                         uncertainty=np.array([40.0, 20.0, 8.0, np.nan, 31.0]),
                         sigma=np.full(5, 120.0), background=np.full(5, 30.0), intensity=np.arange(5.0))


@pytest.mark.parametrize("text, want", [("500:", (500.0, math.inf)), (":30", (-math.inf, 30.0)),
                                        ("1:2.5", (1.0, 2.5)), ("7", (7.0, 7.0)), (" -3 : 4 ", (-3.0, 4.0))])
def test_ranges_are_read(text, want):
    assert parse_range(text) == want


@pytest.mark.parametrize("text, needle", [("", "give LO:HI"), (":", "give LO:HI"), ("1:2:3", "give LO:HI"),
                                          ("a:3", "give LO:HI"), ("5:1", "the lower end 5 is above the upper end 1"),
                                          ("nan:", "the lower end")])
def test_bad_ranges_are_refused(text, needle):
    with pytest.raises(DSIRError, match=needle):
        parse_range(text, "--photons")


def test_keep_rows_in_every_range_nan_out():
    locs = _locs()
    ranges = {"photons": (500.0, math.inf), "uncertainty": (-math.inf, 30.0)}
    mask, out = keep(locs, ranges)
    assert mask.tolist() == [False, True, True, False, False]
    assert out == {"photons": 2, "uncertainty": 3}  # a failed fit's NaN fails both
    assert summary(mask, out, ranges) == ("2 of 5 localizations kept (photons >= 500: 2 out; uncertainty <= 30 nm: "
                                          "3 out)")
    assert describe({"sigma": (80.0, 200.0)}) == "sigma 80-200 nm"
    with pytest.raises(DSIRError, match="t.csv has no photons column to filter on .its columns beyond frame, x, y: "
                                        "intensity."):
        keep(Localizations([0], [1.0], [2.0], intensity=[3.0]), {"photons": (1.0, 2.0)}, "t.csv")
    with pytest.raises(DSIRError, match="cannot filter on 'z'"):
        keep(locs, {"z": (0.0, 1.0)})


def test_dsir_filter_keeps_the_inputs_format_and_every_column(tmp_path, capsys):
    """A CSV keeps its header, other columns, comments and protocol; a
    Picasso file its fields and YAML steps, with a step naming the filter;
    another format carries our columns, and says so."""
    locs = _locs()
    src = tmp_path / "l.csv"
    write_localizations(src, locs, metadata={"camera": {"baseline": 100.0}})
    text = src.read_text().splitlines()
    src.write_text("\n".join([text[0], "# a comment", *text[1:]]) + "\n")
    out = tmp_path / "f.csv"
    assert main(["filter", str(src), "-o", str(out), "--photons", "500:", "--uncertainty", ":30"]) == 0
    assert capsys.readouterr().out.strip().endswith("2 of 5 localizations kept (photons >= 500: 2 out; uncertainty "
                                                    "<= 30 nm: 3 out)")
    lines = out.read_text().splitlines()
    assert lines[:2] == [text[0], "# a comment"] and lines[2:] == [text[2], text[3]]
    assert (tmp_path / "f-protocol.txt").read_text() == (tmp_path / "l-protocol.txt").read_text()
    np.testing.assert_allclose(read_localizations(out).photons, [600.0, 2000.0])
    pic = tmp_path / "p.hdf5"
    write_localizations(pic, locs, pixel_size=100.0, frame_shape=(8, 8), n_frames=9)
    assert main(["filter", str(pic), "-o", str(tmp_path / "pf.hdf5"), "--sigma", "100:150", "--photons", "800:"]) == 0
    back, info = read_picasso(tmp_path / "pf.hdf5")
    assert back.frame.tolist() == [2, 4] and info[0]["Frames"] == 9
    assert info[-1]["Filter"] == "photons >= 800, sigma 100-150 nm"
    with h5py.File(tmp_path / "pf.hdf5") as f:
        assert f["locs"].dtype == h5py.File(pic)["locs"].dtype  # every field kept
    capsys.readouterr()
    assert main(["filter", str(src), "-o", str(tmp_path / "c.hdf5"), "--photons", "500:"]) == 2  # pixels unknown
    assert "--camera-pixel-size" in capsys.readouterr().err and not (tmp_path / "c.hdf5").exists()
    assert main(["filter", str(src), "-o", str(tmp_path / "c.hdf5"), "--photons", "500:", "--camera-pixel-size",
                 "100"]) == 0
    assert "carries frame, x, y" in capsys.readouterr().err
    assert read_picasso(tmp_path / "c.hdf5")[0].frame.tolist() == [1, 2, 4]


@pytest.mark.parametrize("argv, needle", [
    ([], "give at least one range to filter on"),
    (["--photons", "5:1"], "argument --photons: the lower end 5 is above the upper end 1"),
    (["--z", "0:1"], "unrecognized arguments: --z"),
])
def test_dsir_filter_refuses_what_cannot_work(tmp_path, capsys, argv, needle):
    src = tmp_path / "l.csv"
    write_localizations(src, Localizations([0], [1.0], [2.0], intensity=[3.0]))
    try:
        rc = main(["filter", str(src), "-o", str(tmp_path / "o.csv"), *argv])
    except SystemExit as e:
        rc = e.code
    assert rc == 2 and needle in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()
    assert main(["filter", str(src), "-o", str(tmp_path / "o.csv"), "--photons", "1:"]) == 2
    assert "l.csv has no photons column to filter on" in capsys.readouterr().err


def test_dsir_filter_of_a_picasso_file_tells_of_the_rows_picasso_leaves_out(tmp_path, capsys):
    """Review: dsir filter from a Picasso file to a Picasso file said nothing
    of the rows Picasso's load_locs leaves out (dsir drift did)."""
    locs = Localizations(np.array([0, 0, 1]), np.array([20.0, 500.0, 500.0]), np.array([500.0, 500.0, 300.0]),
                         photons=np.array([800.0, 900.0, 1000.0]))
    src = write_localizations(tmp_path / "in.hdf5", locs, pixel_size=100.0, frame_shape=(8, 8))
    capsys.readouterr()
    assert main(["filter", str(src), "-o", str(tmp_path / "out.hdf5"), "--photons", "850:"]) == 0
    assert "load_locs leaves them out" not in capsys.readouterr().err  # (the edge row filtered out)
    assert main(["filter", str(src), "-o", str(tmp_path / "all.hdf5"), "--photons", "0:"]) == 0
    assert "1 of 3 localizations lie within half a camera pixel of the top or left edge" in capsys.readouterr().err
