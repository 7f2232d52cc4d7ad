"""dsir render / resolution / drift on simulated structured tables."""

import numpy as np
import pytest

from napari_dsir.cli import main
from napari_dsir.drift import read_drift_table
from napari_dsir.io import open_stack, read_localizations, write_localizations
from napari_dsir.structures import StructureConfig, simulate_structure_locs


@pytest.fixture(scope="module")
def drifting(tmp_path_factory):
    """2,000 frames of filaments, 1 /um^2, 200 nm linear drift in x."""
    cfg = StructureConfig(field_nm=(3200.0, 3200.0), n_structures=6, density=1.0,
                          drift_velocity_nm=(0.1, 0.0))
    noisy, _, truth = simulate_structure_locs(2000, cfg, precision_nm=10.0, seed=3)
    path = tmp_path_factory.mktemp("post") / "locs.csv"
    write_localizations(path, noisy)
    return path, truth


def test_render_hist_and_gauss_write_calibrated_tiffs(drifting, tmp_path, capsys):
    path, _ = drifting
    locs = read_localizations(path)
    out = tmp_path / "hist.tif"
    assert main(["render", str(path), "-o", str(out), "--pixel-size", "20", "--mode", "hist"]) == 0
    assert "localizations (histogram)" in capsys.readouterr().out
    img = open_stack(out)
    assert img.pixel_size == pytest.approx(20.0)
    inside = int(np.sum((locs.x >= 0) & (locs.y >= 0)))  # the image starts at 0 nm
    assert inside > 0.98 * len(locs)
    assert img.read()[0].sum() == pytest.approx(inside, abs=1)  # each one counted once
    out = tmp_path / "gauss.tif"
    assert main(["render", str(path), "-o", str(out), "--pixel-size", "20", "--mode", "gauss"]) == 0
    gauss = open_stack(out).read()[0]
    assert gauss.sum() == pytest.approx(inside, rel=0.01)
    # the default: Gaussians, since the table has uncertainties
    assert main(["render", str(path), "-o", str(tmp_path / "auto.tif"), "--pixel-size", "20"]) == 0
    np.testing.assert_array_equal(open_stack(tmp_path / "auto.tif").read()[0], gauss)
    rgb = tmp_path / "time.tif"
    assert main(["render", str(path), "-o", str(rgb), "--color-by-frame"]) == 0
    import tifffile

    assert tifffile.imread(rgb).shape[-1] == 3
    assert "localizations (Gaussians)" in capsys.readouterr().out


def test_render_of_a_picasso_file_covers_its_camera_frame(drifting, tmp_path, capsys):
    """The image spans the frame the Picasso YAML states (Height x Width
    camera px), not the positions' extent."""
    path, _ = drifting
    pic = tmp_path / "in.hdf5"
    write_localizations(pic, read_localizations(path), pixel_size=100.0, frame_shape=(40, 36))
    out = tmp_path / "r.tif"
    assert main(["render", str(pic), "-o", str(out), "--pixel-size", "20"]) == 0
    assert open_stack(out).shape == (1, 200, 180)
    # a frame too small for the table: what it leaves out is said
    locs = read_localizations(pic)
    n_out = int(((locs.x >= 3600) | (locs.y >= 4000) | (locs.x < 0) | (locs.y < 0)).sum())
    err = capsys.readouterr().err
    assert n_out > 0 and f"{n_out} of {len(locs)} localizations lie outside the 36x40 px frame" in err


def test_render_of_a_csv_covers_the_camera_frame_its_protocol_states(drifting, tmp_path, capsys):
    """As for a Picasso file: the image spans the frame (``frame_shape``,
    Height x Width camera px of ``cameraSettings.pixelSize`` nm) that the
    protocol beside the CSV states, and what it leaves out is said."""
    import json

    import yaml

    path, _ = drifting
    table = tmp_path / "run.csv"
    table.write_text(path.read_text())
    protocol = tmp_path / "run-protocol.txt"
    protocol.write_text(json.dumps({"cameraSettings": {"pixelSize": 100.0},
                                    "napari-dsir": {"camera_pixel_size": 100.0, "frame_shape": [40, 36]}}))
    out = tmp_path / "r.tif"
    assert main(["render", str(table), "-o", str(out), "--pixel-size", "20", "--mode", "hist"]) == 0
    assert open_stack(out).shape == (1, 200, 180)
    locs = read_localizations(table)
    n_out = int(((locs.x >= 3600) | (locs.y >= 4000) | (locs.x < 0) | (locs.y < 0)).sum())
    err = capsys.readouterr().err
    assert n_out > 0 and f"{n_out} of {len(locs)} localizations lie outside the 36x40 px frame (100 nm pixels) " \
        "that " in err and "run-protocol.txt states" in err
    assert open_stack(out).read()[0].sum() == len(locs) - n_out
    # a Picasso file written from it keeps that frame
    assert main(["drift", str(table), "-o", str(tmp_path / "run.hdf5"), "--segments", "4"]) == 0
    movie = list(yaml.safe_load_all((tmp_path / "run.yaml").read_text()))[0]
    assert (movie["Pixelsize"], movie["Height"], movie["Width"]) == (100.0, 40, 36)
    # a camera pixel size given over the protocol's: the frame in those pixels, as the positions
    assert main(["render", str(table), "-o", str(out), "--pixel-size", "20", "--overwrite",
                 "--camera-pixel-size", "125"]) == 0
    assert open_stack(out).shape == (1, 250, 225)
    # a frame that is not two positive whole numbers, or no pixel size: the positions' extent, as before
    for body in ({"cameraSettings": {"pixelSize": 100.0}, "napari-dsir": {"frame_shape": [40.5, "x"]}},
                 {"napari-dsir": {"frame_shape": [40, 36]}}):
        protocol.write_text(json.dumps(body))
        assert main(["render", str(table), "-o", str(out), "--pixel-size", "20", "--overwrite"]) == 0
        h, w = open_stack(out).shape[1:]
        assert (h, w) == (int(locs.y.max() // 20) + 1, int(locs.x.max() // 20) + 1)


def test_render_says_what_its_area_leaves_out_and_takes_an_extent(tmp_path, capsys):
    p = tmp_path / "neg.csv"
    p.write_text("frame,x,y\n1,-500,100\n1,100,-50\n2,150,120\n3,1000,990\n")
    out = tmp_path / "r.tif"
    assert main(["render", str(p), "-o", str(out), "--pixel-size", "10"]) == 0
    cap = capsys.readouterr()
    assert ("2 of 4 localizations lie outside the image, from 0 nm to the largest position, and are not drawn; "
            "--extent Y0 X0 Y1 X1 (nm) sets the area") in cap.err
    assert "2 localizations (histogram)" in cap.out and open_stack(out).read()[0].sum() == 2
    assert main(["render", str(p), "-o", str(out), "--pixel-size", "10", "--overwrite",
                 "--extent", "-100", "-600", "1000", "1100"]) == 0
    cap = capsys.readouterr()
    assert "warning" not in cap.err and "170x110 px of 10 nm from (x -600, y -100) nm, 4 localizations" in cap.out
    assert open_stack(out).read()[0].sum() == 4
    assert main(["render", str(p), "-o", str(out), "--overwrite", "--extent", "0", "0", "500", "500"]) == 0
    cap = capsys.readouterr()
    assert "3 of 4 localizations lie outside --extent, and are not drawn" in cap.err and ", 1 localization (" in cap.out
    p.write_text("frame,x,y\n1,-500,-100\n")
    assert main(["render", str(p), "-o", str(tmp_path / "n.tif")]) == 2
    assert "give an extent" in capsys.readouterr().err


def test_render_gauss_without_uncertainty_asks_for_sigma(tmp_path, capsys):
    p = tmp_path / "plain.csv"
    p.write_text("frame,x,y\n1,100,100\n2,150,120\n")
    assert main(["render", str(p), "-o", str(tmp_path / "o.tif"), "--mode", "gauss"]) == 2
    assert "give --sigma" in capsys.readouterr().err
    p.write_text("frame,x,y,uncertainty [nm]\n1,100,100,0\n2,150,120,nan\n")  # every fit failed
    assert main(["render", str(p), "-o", str(tmp_path / "o.tif"), "--mode", "gauss"]) == 2
    assert "no localization has an uncertainty (all fits failed?) to size the Gaussians; give --sigma" in \
        capsys.readouterr().err
    assert not (tmp_path / "o.tif").exists()
    # the default mode falls back to the histogram where no uncertainty sizes a Gaussian
    assert main(["render", str(p), "-o", str(tmp_path / "o.tif")]) == 0
    assert "2 localizations (histogram)" in capsys.readouterr().out
    assert open_stack(tmp_path / "o.tif").read()[0].sum() == 2
    assert main(["render", str(p), "-o", str(tmp_path / "s.tif"), "--sigma", "20"]) == 0
    assert "(Gaussians)" in capsys.readouterr().out


def test_drift_recovers_a_linear_drift(drifting, tmp_path, capsys):
    path, truth = drifting
    out, table, plot = tmp_path / "corrected.csv", tmp_path / "drift.csv", tmp_path / "drift.png"
    assert main(["drift", str(path), "-o", str(out), "--segments", "8", "--drift-table", str(table),
                 "--plot", str(plot)]) == 0
    d = read_drift_table(table)
    est = d.x - d.x[0]
    true = truth.drift.x[d.frames] - truth.drift.x[0]
    assert np.sqrt(np.mean((est - true) ** 2)) < 15.0  # nm, of a 200 nm drift
    assert open(table).readline().strip().replace('"', "") == "frame,x [nm],y [nm]"
    corrected = read_localizations(out)
    assert len(corrected) == len(read_localizations(path))
    assert plot.stat().st_size > 1000


def test_drift_writes_picasso_files(drifting, tmp_path, capsys):
    """Regression: ``-o X.hdf5`` always failed (no pixel size, no frame
    shape). From a Picasso file the output keeps its movie (Pixelsize,
    Height, Width); from a CSV it needs --camera-pixel-size, asked for by
    name before any work, and the frame is the smallest that holds the
    positions."""
    import yaml

    path, _ = drifting
    pic = tmp_path / "in.hdf5"
    write_localizations(pic, read_localizations(path), pixel_size=160.0, frame_shape=(24, 25), n_frames=2000)
    out = tmp_path / "out.hdf5"
    assert main(["drift", str(pic), "-o", str(out), "--segments", "4", "--drift-table", str(tmp_path / "d.csv"),
                 "--plot", str(tmp_path / "d.png")]) == 0, capsys.readouterr().err
    movie = list(yaml.safe_load_all(out.with_suffix(".yaml").read_text()))[0]
    assert (movie["Pixelsize"], movie["Height"], movie["Width"], movie["Frames"]) == (160.0, 24, 25, 2000)
    # a pixel size given for a file that states its own is not used, and said so
    assert main(["render", str(pic), "-o", str(tmp_path / "r.tif"), "--camera-pixel-size", "100"]) == 0
    assert "states its pixel size, 160 nm; --camera-pixel-size 100 is not used" in capsys.readouterr().err
    assert len(read_localizations(out)) == len(read_localizations(pic))
    assert (tmp_path / "d.csv").exists() and (tmp_path / "d.png").exists()
    capsys.readouterr()
    csv_out = tmp_path / "from_csv.hdf5"
    assert main(["drift", str(path), "-o", str(csv_out), "--segments", "4"]) == 2
    assert "--camera-pixel-size" in capsys.readouterr().err and not csv_out.exists()
    assert main(["drift", str(path), "-o", str(csv_out), "--segments", "4", "--camera-pixel-size", "100"]) == 0
    movie = list(yaml.safe_load_all(csv_out.with_suffix(".yaml").read_text()))[0]
    corrected = read_localizations(csv_out)
    assert movie["Pixelsize"] == 100.0 and movie["Width"] * 100 >= corrected.x.max() > (movie["Width"] - 1) * 100
    # a CSV's ThunderSTORM protocol states its camera pixel size: that is the Picasso file's (it was refused);
    # a size given wins, and the difference is said
    beside = tmp_path / "stated.csv"
    beside.write_text(path.read_text())
    (tmp_path / "stated-protocol.txt").write_text('{"cameraSettings": {"pixelSize": 130.0}}')
    capsys.readouterr()
    assert main(["drift", str(beside), "-o", str(tmp_path / "stated.hdf5"), "--segments", "4"]) == 0
    assert list(yaml.safe_load_all((tmp_path / "stated.yaml").read_text()))[0]["Pixelsize"] == 130.0
    assert main(["render", str(beside), "-o", str(tmp_path / "s.tif"), "--camera-pixel-size", "100"]) == 0
    assert "stated-protocol.txt states a camera pixel size of 130 nm; --camera-pixel-size 100 is used" in \
        capsys.readouterr().err
    # the output named as an image is refused, not written as a table under that name
    assert main(["drift", str(path), "-o", str(tmp_path / "c.tif")]) == 2
    assert "the table is written as" in capsys.readouterr().err and not (tmp_path / "c.tif").exists()


def test_drift_keeps_every_other_column_of_the_input(drifting, tmp_path, capsys):
    """A table from another tool (a ThunderSTORM 3-D CSV) comes back with x
    and y corrected and every other cell as it was; written in another
    format it carries our columns only, and says so."""
    import csv

    path, _ = drifting
    locs = read_localizations(path)
    src = tmp_path / "ts3d.csv"
    z = np.round(np.linspace(-300, 300, len(locs)), 1)
    with open(src, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "frame", "x [nm]", "y [nm]", "z [nm]", "sigma1 [nm]", "sigma2 [nm]", "chi2"])
        for i in range(len(locs)):
            w.writerow([i + 1, locs.frame[i] + 1, f"{locs.x[i]:.3f}", f"{locs.y[i]:.3f}", z[i], 120.5, 140.5, 1.7])
    out = tmp_path / "ts3d_corrected.csv"
    assert main(["drift", str(src), "-o", str(out), "--segments", "8"]) == 0
    assert [ln for ln in capsys.readouterr().err.splitlines() if "dsir: warning" in ln] == \
        ["dsir: warning: ts3d.csv: its z column is not used (napari-dsir localizes, renders and scores in 2-D: x, y)"]
    rows_in, rows_out = list(csv.reader(open(src))), list(csv.reader(open(out)))
    assert rows_out[0] == rows_in[0] and len(rows_out) == len(rows_in)
    assert all(a[:2] + a[4:] == b[:2] + b[4:] for a, b in zip(rows_in, rows_out))
    moved = np.array([float(b[2]) - float(a[2]) for a, b in zip(rows_in[1:], rows_out[1:])])
    assert np.ptp(moved) > 100  # the 200 nm drift in x, taken out
    assert main(["drift", str(src), "-o", str(tmp_path / "c.hdf5"), "--segments", "8",
                 "--camera-pixel-size", "100"]) == 0
    assert "carries frame, x, y only (give -o the input's extension" in capsys.readouterr().err


def test_drift_reads_a_text_table_once(drifting, tmp_path, monkeypatch):
    """The table is read and parsed once: its corrected copy is written from
    what was read (a big table took twice its reading time, and its text
    was read again after the drift's work)."""
    from napari_dsir.io import positions, tables

    calls = []

    def counted(fn):
        def wrapper(*args, **kwargs):
            calls.append(fn.__name__)
            return fn(*args, **kwargs)
        return wrapper

    for module in (tables, positions):
        for name in ("table_text", "read_table"):
            monkeypatch.setattr(module, name, counted(getattr(tables, name)))
    path, _ = drifting
    out = tmp_path / "once.csv"
    assert main(["drift", str(path), "-o", str(out), "--segments", "8"]) == 0
    assert sorted(calls) == ["read_table", "table_text"]
    assert len(read_localizations(out)) == len(read_localizations(path))


def test_drift_on_a_too_short_table_is_refused(tmp_path, capsys):
    p = tmp_path / "short.csv"
    p.write_text("frame,x,y\n1,100,100\n2,150,120\n3,160,130\n")
    assert main(["drift", str(p), "-o", str(tmp_path / "c.csv")]) == 2
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "c.csv").exists()


def test_resolution_prints_frc_and_nena(drifting, tmp_path, capsys):
    path, _ = drifting
    plot = tmp_path / "frc.png"
    assert main(["resolution", str(path), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    frc_nm = float(out.split("FRC resolution\t")[1].split()[0])
    nena_nm = float(out.split("NeNA precision\t")[1].split()[0])
    assert 10 < frc_nm < 200
    assert nena_nm == pytest.approx(10.0, rel=0.25)  # the simulated precision
    assert plot.stat().st_size > 1000


def test_resolution_splits_by_blocks_of_frames_as_the_api_does(drifting, tmp_path, capsys):
    """--split blocks (--block-frames) is the API's split_halves "blocks"; the
    default halves are the odd and the even frames, as the output says."""
    from napari_dsir.resolution import frc

    path, _ = drifting
    locs = read_localizations(path)
    assert main(["resolution", str(path), "--split", "blocks", "--block-frames", "50", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "(halves: blocks of 50 frames, 1/7 threshold" in out
    want = frc(locs, 5.0, split="blocks", block_frames=50, seed=2).resolution_nm
    assert float(out.split("FRC resolution\t")[1].split()[0]) == pytest.approx(want, abs=0.05)
    assert main(["resolution", str(path)]) == 0
    assert "(halves: odd and even frames, 1/7 threshold" in capsys.readouterr().out
    # one block: said, with what to change; no block of 0 frames
    assert main(["resolution", str(path), "--split", "blocks", "--block-frames", "5000"]) == 0
    assert "single block of 5000 frames; use shorter blocks (dsir resolution --block-frames N)" in \
        capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["resolution", str(path), "--split", "blocks", "--block-frames", "0"])
    assert "argument --block-frames: must be at least 1, got '0'" in capsys.readouterr().err
