import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from napari_dsir.camera import Camera
from napari_dsir.cli import main
from napari_dsir.errors import DSIRError
from napari_dsir.io import open_stack, read_localizations

from .conftest import shared


@pytest.fixture
def small_stack(tmp_path):
    rc = main(["simulate", "-o", str(tmp_path / "sim.tif"), "-n", "4", "--size", "16", "16", "--density", "2",
               "--seed", "1"])
    assert rc == 0
    return tmp_path / "sim.tif"


def test_simulate_writes_stack_and_ground_truth(small_stack, capsys):
    s = open_stack(small_stack)
    assert s.shape == (4, 16, 16) and s.dtype == np.uint16 and s.pixel_size == pytest.approx(100)
    gt = read_localizations(small_stack.with_suffix(".csv"))
    assert len(gt) > 0 and gt.frame.max() <= 3
    # each emitter's PSF sigma (nm) in the truth: FWHM 200-300 nm by default
    assert gt.sigma is not None and (gt.sigma > 84).all() and (gt.sigma < 128).all()
    # the protocol beside it says it is ground truth of frames 0-3 (napari opens it as such)
    from napari_dsir.io.tables import stated_frames, stated_metadata

    path = small_stack.with_suffix(".csv")
    assert stated_metadata(path)["kind"] == "ground_truth" and stated_frames(path) == (0, 4)


def test_simulate_an_emccd(tmp_path, capsys):
    """`--em-gain` simulates an EMCCD (gamma multiplication, its excess
    noise) and the TIFF states it, so a run's fits take it from the file and
    get the photons right (before: only through the Python API)."""
    movie = tmp_path / "em.tif"
    assert main(["simulate", "-o", str(movie), "-n", "6", "--size", "32", "32", "--density", "1", "--seed", "3",
                 "--em-gain", "100", "--gain", "0.2083", "--photons", "1000:3000", "--background", "30"]) == 0
    assert float(open_stack(movie).camera_metadata["EM gain"]) == 100
    out = tmp_path / "em_locs.csv"
    assert main(["localize", str(movie), "-o", str(out), "-q"]) == 0
    assert "EM gain 100" in capsys.readouterr().err
    from napari_dsir.evaluate import match

    truth, locs = read_localizations(movie.with_suffix(".csv")), read_localizations(out)
    gi, pi, _ = match(truth, locs, 100.0)
    assert len(gi) > 20 and np.nanmedian(locs.photons[pi] / truth.intensity[gi]) == pytest.approx(1.0, abs=0.15)


def test_simulate_an_airy_psf(tmp_path):
    args = ["simulate", "-n", "2", "--size", "16", "16", "--density", "2", "--seed", "1"]
    assert main(args + ["-o", str(tmp_path / "g.tif")]) == 0
    assert main(args + ["-o", str(tmp_path / "a.tif"), "--psf", "airy"]) == 0
    g, a = open_stack(tmp_path / "g.tif").read(), open_stack(tmp_path / "a.tif").read()
    assert g.shape == a.shape and not np.array_equal(g, a)
    with pytest.raises(SystemExit):
        main(args + ["-o", str(tmp_path / "b.tif"), "--psf", "astigmatic"])


def test_reconstruct_and_localize(small_stack, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "sr.tif"
    rc = main(["reconstruct", str(small_stack), "-o", str(out), "--model", str(tiny_checkpoint), "-q",
               "--frames", "1:3"])
    assert rc == 0
    s = open_stack(out)
    assert s.shape == (1, 128, 128) and s.pixel_size == pytest.approx(12.5)
    assert str(out) in capsys.readouterr().out
    locs = tmp_path / "l.csv"
    rc = main(["localize", str(small_stack), "-o", str(locs), "--model", str(tiny_checkpoint), "-q",
               "--threshold", "0", "--frames", "1:3"])
    assert rc == 0 and locs.is_file()
    # the fit summary (refinement is the default): medians, then fits per kind
    out = capsys.readouterr().out
    assert "median" in out and "free fits" in out and "failed" in out
    # CSV frames are 1-based: frames 1 and 2 (0-based) are written as 2 and 3
    assert set(read_localizations(locs).frame) == {1, 2}
    assert open(locs).read().splitlines()[1].split(",")[1] == "2"


def test_pixel_size_warning_once_and_explicit_value_wins(tmp_path, tiny_checkpoint, capsys):
    import tifffile

    raw = tmp_path / "nopx.tif"
    tifffile.imwrite(raw, np.full((3, 8, 8), 120, np.uint16), photometric="minisblack")
    out = tmp_path / "sr.tif"
    assert main(["reconstruct", str(raw), "-o", str(out), "--model", str(tiny_checkpoint), "-q"]) == 0
    err = capsys.readouterr().err
    assert err.count("no pixel size in the file; assuming 100 nm") == 1
    assert open_stack(out).pixel_size == pytest.approx(12.5)
    assert main(["reconstruct", str(raw), "-o", str(out), "--model", str(tiny_checkpoint), "-q",
                 "--pixel-size", "160", "--overwrite"]) == 0
    assert "assuming" not in capsys.readouterr().err
    assert open_stack(out).pixel_size == pytest.approx(20.0)


def test_closed_pipe_exits_quietly(small_stack):
    """`dsir evaluate ... | head -1` must not report a BrokenPipeError."""
    import os

    gt = small_stack.with_suffix(".csv")
    r, w = os.pipe()
    os.close(r)  # the reader has gone before anything is written
    try:
        proc = subprocess.run([sys.executable, "-m", "napari_dsir.cli", "evaluate", str(gt), str(gt)],
                              stdout=w, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(w)
    assert proc.stderr == "" and proc.returncode == 141


@pytest.mark.parametrize("command, option, default", [
    ("simulate", "--n-frames", "100"), ("simulate", "--seed", "0"), ("train", "--epochs", "100"),
    ("localize", "--radius", "the model's"), ("localize", "--threshold", "the model's"),
    ("reconstruct", "--chunk", "256"),
])
def test_help_states_defaults(command, option, default, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    text = text[text.index("options:"):]  # past the usage line
    after = text[text.index(option):]
    assert "default" in after[:250] and default in after[:250]


def test_localize_on_a_local_cluster_and_tiled_match_one_process(small_stack, tiny_checkpoint, tmp_path):
    # the network's positions (float32 fits depend slightly on how they are batched)
    base = ["localize", str(small_stack), "--model", str(tiny_checkpoint), "-q", "--threshold", "0", "--refine", "none"]
    assert main(base + ["-o", str(tmp_path / "one.csv"), "--image", str(tmp_path / "one.tif")]) == 0
    assert main(base + ["-o", str(tmp_path / "many.csv"), "--image", str(tmp_path / "many.tif"),
                        "--scheduler", "local:2", "--chunk", "1"]) == 0
    assert main(base + ["-o", str(tmp_path / "tiled.csv"), "--image", str(tmp_path / "tiled.tif"),
                        "--tile", "6"]) == 0
    one = read_localizations(tmp_path / "one.csv")
    assert len(one) > 0
    for other in ("many", "tiled"):
        locs = read_localizations(tmp_path / f"{other}.csv")
        np.testing.assert_array_equal(locs.frame, one.frame)
        np.testing.assert_allclose(locs.x, one.x, atol=0.01)
        np.testing.assert_allclose(open_stack(tmp_path / f"{other}.tif").read(),
                                   open_stack(tmp_path / "one.tif").read(), rtol=1e-4, atol=1e-4)


def test_existing_output_is_refused_without_overwrite(small_stack, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "sr.tif"
    out.write_bytes(b"precious")
    rc = main(["reconstruct", str(small_stack), "-o", str(out), "--model", str(tiny_checkpoint), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "already exists" in err and str(out) in err
    assert out.read_bytes() == b"precious"
    assert main(["reconstruct", str(small_stack), "-o", str(out), "--model", str(tiny_checkpoint), "-q",
                 "--overwrite"]) == 0
    assert out.read_bytes() != b"precious"


@pytest.mark.parametrize(
    "argv_tail, needle",
    [
        (["missing.tif"], "no such file"),
        (["--pixel-size", "-3"], "positive"),
        (["--frames", "9:12"], "selects no frames"),
        (["--model", "nope.pt"], "no such model file"),
        (["--scheduler", "local:0"], "local:N"),
        (["--scheduler", "local", "--frames-output", "f.tif"], "--frames-output cannot be used"),
        (["--binning", "5"], "invalid choice"),
    ],
)
def test_bad_input_exit_2_with_one_line(small_stack, tmp_path, capsys, argv_tail, needle):
    argv = ["reconstruct"]
    if argv_tail[0].endswith(".tif"):
        argv += [str(tmp_path / argv_tail[0])]
    else:
        argv += [str(small_stack)] + argv_tail
    argv += ["-o", str(tmp_path / "o.tif"), "-q"]
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse usage errors
        rc = e.code
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err
    assert not (tmp_path / "o.tif").exists()
    if not err.startswith("usage"):
        assert len(err.splitlines()) == 1


def test_evaluate_text_and_json(tmp_path, capsys):
    gt = tmp_path / "gt.csv"
    gt.write_text("frame,x,y\n1,100,100\n1,1000,1000\n2,500,500\n")
    pred = tmp_path / "pred.csv"
    pred.write_text("frame,x,y\n1,130,100\n1,1000,1040\n2,900,500\n")
    assert main(["evaluate", str(gt), str(pred)]) == 0
    out = capsys.readouterr().out
    assert "radius 250 nm: Jaccard 0.500" in out and "radius 100 nm" in out
    assert main(["evaluate", str(gt), str(pred), "--radius", "250", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    m = d["metrics"][0]
    assert m["tp"] == 2 and m["fp"] == 1 and m["fn"] == 1 and m["rmse"] == pytest.approx(np.sqrt(1250))


def test_evaluate_scores_a_run_on_part_of_a_movie_on_its_frames(camera_movie, tmp_path, capsys):
    """`dsir evaluate` of a run on frames 1-3 scores the ground truth of
    those frames, as the table states them (before: of every frame, the
    others' emitters counted as missed); a table that states no range is
    scored on every frame, said where the truth reaches beyond it."""
    stated, _ = camera_movie
    gt = stated.with_suffix(".csv")
    for suffix in (".csv", ".hdf5"):
        part = tmp_path / f"part{suffix}"
        assert main(["localize", str(stated), "-o", str(part), "-q", "--frames", "1:4"]) == 0
        capsys.readouterr()
        assert main(["evaluate", str(gt), str(part), "--json"]) == 0
        d = json.loads(capsys.readouterr().out)
        truth = read_localizations(gt)
        in_run = int(((truth.frame >= 1) & (truth.frame < 4)).sum())
        assert d["frames"] == [1, 4] and d["n_ground_truth"] == in_run < len(truth)
        assert d["metrics"][0]["recall"] > 0.5
    bare = tmp_path / "bare.csv"  # the same rows, no protocol beside them
    bare.write_bytes((tmp_path / "part.csv").read_bytes())
    assert main(["evaluate", str(gt), str(bare)]) == 0
    captured = capsys.readouterr()
    assert "states no frame range (a table from elsewhere): the ground truth of every frame is scored" in captured.err
    assert "while its localizations lie in frames 2-4" in captured.err  # 1-based, as the files count them
    assert f"{len(read_localizations(gt))} ground-truth positions" in captured.out


def test_demo(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed
    assert {p.name for p in out.iterdir()} == {"sample_dsir.tif", "sample_dsir.png", "sample_localizations.csv"}
    assert (out / "sample_dsir.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(read_localizations(out / "sample_localizations.csv")) > 100


def test_entry_point_and_usage_error():
    r = subprocess.run([sys.executable, "-m", "napari_dsir.cli", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "napari-dsir" in r.stdout
    r = subprocess.run([sys.executable, "-m", "napari_dsir.cli", "reconstruct"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr


def test_import_does_not_load_qt():
    code = "import sys, napari_dsir.cli, napari_dsir.reconstruct, napari_dsir.train; " \
           "print(any(m.split('.')[0] in ('PyQt5','PyQt6','PySide2','PySide6','qtpy','napari') for m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "False", r.stderr


def test_thunderstorm_demo_end_to_end(tmp_path, capsys):
    stack = shared("thunderstorm_demo", "ArtificialDataset_demo1.tif")
    gt = shared("thunderstorm_demo", "positions_demo1.csv")
    locs = tmp_path / "locs.csv"
    assert main(["localize", str(stack), "-o", str(locs), "-q"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(gt), str(locs), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)["metrics"][0]
    # benchmarks/results/accuracy.md: Jaccard 0.777 on frames 11-20 of this set
    assert m["jaccard"] > 0.74 and m["recall"] > 0.74


def test_train_the_fast_network_on_movies(tmp_path, capsys):
    out = tmp_path / "fast.pt"
    rc = main(["train", "-o", str(out), "--arch", "shuffle", "--channels", "4", "--context", "4", "--movies",
               "--epochs", "1", "--n-train", "16", "--n-val", "16", "--batch-size", "8", "--lr-decay",
               "--png-every", "0", "--device", "cpu", "--movie-error-movies", "3", "-q"])
    assert rc == 0
    from napari_dsir.model import load_checkpoint

    m = load_checkpoint(out)
    assert m.arch == "shuffle" and m.normalization == "movie"
    t = m.metadata["training"]
    assert t["kernel_width"] == 7 and t["lr_decay"] and t["movies"] is not None and t["error_movies"] == 3
    assert m.metadata["calibration"]["crowded_error"]["movies"] == 16 // 8 + 3
    assert "--movies" in m.metadata["command"]


def test_movies_refuse_single_frame_simulation_options(tmp_path, capsys):
    rc = main(["train", "-o", str(tmp_path / "x.pt"), "--movies", "--density", "1:2", "-q"])
    assert rc != 0 and "--density applies to single-frame training only" in capsys.readouterr().err
    rc = main(["train", "-o", str(tmp_path / "x.pt"), "--movie-airy-fraction", "0.3", "-q"])
    assert rc != 0 and "apply to --movies" in capsys.readouterr().err
    rc = main(["train", "-o", str(tmp_path / "x.pt"), "--movie-error-movies", "10", "-q"])
    assert rc != 0 and "apply to --movies" in capsys.readouterr().err
    rc = main(["train", "-o", str(tmp_path / "x.pt"), "--movies", "--movie-error-movies", "-1", "-q"])
    assert rc != 0 and "--movie-error-movies must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "-o", str(tmp_path / "x.pt"), "--movies", "--movie-airy-fraction", "1.5"])


def test_movies_with_airy_psfs_and_brighter_emitters(tmp_path):
    out = tmp_path / "airy.pt"
    rc = main(["train", "-o", str(out), "--arch", "shuffle", "--channels", "4", "--context", "4", "--movies",
               "--movie-airy-fraction", "0.5", "--movie-photons-max", "20000", "--epochs", "1", "--n-train", "16",
               "--n-val", "16", "--batch-size", "8", "--png-every", "0", "--device", "cpu",
               "--movie-error-movies", "0", "-q"])
    assert rc == 0
    from napari_dsir.model import load_checkpoint

    movies = load_checkpoint(out).metadata["training"]["movies"]
    assert movies["airy_fraction"] == 0.5 and movies["photons_max"] == 20000.0


def test_the_fast_network_cannot_change_its_upsampling(small_stack, tiny_shuffle_checkpoint, tmp_path, capsys):
    rc = main(["reconstruct", str(small_stack), "-o", str(tmp_path / "o.tif"), "--model",
               str(tiny_shuffle_checkpoint), "--upsampling", "4", "-q"])
    assert rc != 0 and "up-sampling 4 is not possible" in capsys.readouterr().err
    rc = main(["reconstruct", str(small_stack), "-o", str(tmp_path / "o.tif"), "--model",
               str(tiny_shuffle_checkpoint), "-q"])
    assert rc == 0
    assert open_stack(tmp_path / "o.tif").shape[1:] == (128, 128)


def test_localize_warns_when_the_fits_disagree_with_the_camera(tmp_path, capsys):
    """A sparse movie recorded at 1 e-/ADU: with the right sensitivity no
    warning; told 3 e-/ADU (photons 3x too many), the lone free fits'
    residuals are ~3x the predicted variance and the CLI says so."""
    movie = tmp_path / "sparse.tif"
    assert main(["simulate", "-o", str(movie), "-n", "40", "--density", "0.1", "--photons", "1000:3000",
                 "--gain", "1", "--base-level", "100", "--seed", "4"]) == 0
    capsys.readouterr()
    for sensitivity, warned in (("1", False), ("3", True)):
        out = tmp_path / f"locs_{sensitivity}.csv"
        assert main(["localize", str(movie), "-o", str(out), "-q", "--baseline", "100",
                     "--sensitivity", sensitivity]) == 0
        err = capsys.readouterr().err
        assert ("variance the camera settings predict" in err) is warned, err
        if warned:
            assert "overestimated" in err
    # the Python API hears it too: one run path, its warnings through the progress callback
    from napari_dsir.run import reconstruct

    heard = []
    reconstruct(movie, localize=True, refine=True, camera={"baseline": 100, "sensitivity": 3},
                progress=lambda p: heard.append(p.message) if p.kind == "warning" else None)
    assert any("variance the camera settings predict" in m for m in heard), heard


def test_localize_binning_reaches_the_run_and_its_metadata(small_stack, tiny_checkpoint, tmp_path):
    """--binning N: the network sees NxN-binned frames; the Picasso YAML
    records it (auto measures the PSF: too few spots here, so 1)."""
    import yaml

    for value, want in (("2", 2), ("auto", 1)):
        out = tmp_path / f"b{value}.hdf5"
        assert main(["localize", str(small_stack), "-o", str(out), "--model", str(tiny_checkpoint), "-q",
                     "--frames", "0:2", "--binning", value]) == 0
        docs = list(yaml.safe_load_all(out.with_suffix(".yaml").read_text()))
        assert any(d.get("network_binning") == want for d in docs), docs


def test_hot_pixels_are_repaired_unless_kept(tmp_path, capsys):
    """A movie with a hot pixel: dsir localize warns, repairs it and records
    it in the Picasso YAML; --keep-hot-pixels leaves it (and says nothing)."""
    import yaml

    from napari_dsir.io import write_tiff
    from napari_dsir.simulate import SimulationConfig, simulate

    frames, _ = simulate(12, SimulationConfig(frame_size=(24, 24), density=1.0, background=30.0), seed=2)
    frames[:, 4, 15] += 2000
    stack = write_tiff(tmp_path / "hot.tif", frames.astype(np.uint16), 100.0)
    for extra, want in (([], [[4, 15]]), (["--keep-hot-pixels"], [])):
        out = tmp_path / f"hot{len(extra)}.hdf5"
        assert main(["localize", str(stack), "-o", str(out), "-q", "--refine", "none"] + extra) == 0
        err = capsys.readouterr().err
        assert ("1 hot pixel (bright in most frames" in err) is bool(want), err
        docs = list(yaml.safe_load_all(out.with_suffix(".yaml").read_text()))
        assert any(d.get("hot_pixels") == want for d in docs), docs


def test_a_dead_column_is_repaired_with_a_warning_and_recorded(tmp_path, capsys):
    import yaml

    from napari_dsir.io import write_tiff
    from napari_dsir.simulate import SimulationConfig, simulate

    frames, _ = simulate(16, SimulationConfig(frame_size=(24, 24), density=1.0, background=30.0), seed=2)
    frames[:, :, 9] = 0
    stack = write_tiff(tmp_path / "dead.tif", frames.astype(np.uint16), 100.0)
    out = tmp_path / "dead.hdf5"
    assert main(["localize", str(stack), "-o", str(out), "-q", "--refine", "none"]) == 0
    assert "24 dead pixels (the same value, or NaN, in every frame" in capsys.readouterr().err
    docs = list(yaml.safe_load_all(out.with_suffix(".yaml").read_text()))
    assert any(d.get("dead_pixels") == 24 for d in docs), docs


def test_column_offsets_are_subtracted_with_a_warning_and_recorded(tmp_path, capsys):
    import yaml

    from napari_dsir.io import write_tiff
    from napari_dsir.simulate import SimulationConfig, simulate

    frames, _ = simulate(20, SimulationConfig(frame_size=(24, 24), density=1.0, background=30.0), seed=2)
    frames[:, :, 9] += 60
    stack = write_tiff(tmp_path / "striped.tif", frames.astype(np.uint16), 100.0)
    out = tmp_path / "striped.hdf5"
    assert main(["localize", str(stack), "-o", str(out), "-q", "--refine", "none"]) == 0
    assert "1 column of the camera reads above or below its neighbours" in capsys.readouterr().err
    docs = list(yaml.safe_load_all(out.with_suffix(".yaml").read_text()))
    assert any((d.get("stripes") or {}).get("columns") == 1 for d in docs), docs


def test_detections_around_a_saturated_bead_are_left_out_with_a_warning_and_recorded(tmp_path, capsys):
    """dsir localize on a movie with a bead at the camera's maximum in every
    frame: a warning counts the detections left out around it, and the
    Picasso YAML records them; the clean movie says and records nothing."""
    import yaml

    from napari_dsir.io import write_tiff
    from napari_dsir.simulate import SimulationConfig, render_emitters, simulate

    frames, _ = simulate(6, SimulationConfig(frame_size=(40, 40), density=1.0, background=30.0, base_level=100.0),
                         seed=4)
    bead = render_emitters(np.array([2000.0]), np.array([2000.0]), np.array([5e6]), np.array([130.0]), (40, 40), 100.0)
    for name, movie in (("clean", frames), ("bead", frames + bead[None])):
        stack = write_tiff(tmp_path / f"{name}.tif", np.clip(movie, 0, 65535).astype(np.uint16), 100.0)
        out = tmp_path / f"{name}.hdf5"
        assert main(["localize", str(stack), "-o", str(out), "-q", "--refine", "none"]) == 0
        err = capsys.readouterr().err
        docs = list(yaml.safe_load_all(out.with_suffix(".yaml").read_text()))
        recorded = next(d["bright_objects"] for d in docs if "bright_objects" in d)
        if name == "clean":
            assert "far brighter" not in err and recorded == {"objects": 0, "detections_left_out": 0}
        else:
            assert recorded["objects"] == 6 and recorded["detections_left_out"] > 0
            assert "6 objects far brighter than anything in the network's training" in err
            assert f"{recorded['detections_left_out']} detections around them left out" in err


def test_reconstruct_takes_an_uneven_illumination_out_given_the_camera(tmp_path, capsys):
    """dsir reconstruct with camera options measures the beam and the
    network sees it taken out (said on stderr, no fits claimed); without
    them, nothing is measured and the sum image keeps the beam's haze."""
    import tifffile

    from napari_dsir.io import write_tiff

    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:40, 0:40] + 0.5
    lit = 6.0 ** (-((yy - 20) ** 2 + (xx - 20) ** 2) / 800.0)
    frames = (rng.poisson(np.broadcast_to(60.0 * lit, (24, 40, 40))) + 100).astype(np.uint16)
    stack = write_tiff(tmp_path / "beam.tif", frames, 100.0)
    middle = []
    for opts in ([], ["--baseline", "100", "--sensitivity", "1"]):
        out = tmp_path / f"sr{len(opts)}.tif"
        assert main(["reconstruct", str(stack), "-o", str(out), "-q", *opts]) == 0
        err = capsys.readouterr().err
        said = "uneven illumination: the background is" in err
        assert said is bool(opts), err
        assert ("the background looks" in err and "give the camera's settings" in err) is not bool(opts), err
        assert "fits follow" not in err
        img = tifffile.imread(out)
        middle.append(img[120:200, 120:200].mean() / max(img[:48, :48].mean(), 1e-9))
    assert middle[0] > 10.0 and middle[1] < 2.0, middle


def test_an_uneven_illumination_is_followed_and_recorded(tmp_path, capsys):
    """A movie lit by a beam 3x brighter in its centre than at its corners:
    dsir localize says its fits follow the background's shape and records
    it in the Picasso YAML; an evenly lit one records that it did not."""
    import yaml

    from napari_dsir.io import write_tiff

    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[0:40, 0:40] + 0.5
    for ratio, shaped in ((3.0, True), (1.0, False)):
        lit = ratio ** (-((yy - 20) ** 2 + (xx - 20) ** 2) / 800.0)
        frames = (rng.poisson(np.broadcast_to(60.0 * lit, (16, 40, 40))) + 100).astype(np.uint16)
        stack = write_tiff(tmp_path / f"beam{ratio:g}.tif", frames, 100.0)
        out = tmp_path / f"beam{ratio:g}.hdf5"
        assert main(["localize", str(stack), "-o", str(out), "-q", "--baseline", "100", "--sensitivity", "1"]) == 0
        err = capsys.readouterr().err
        assert ("uneven illumination: the background is" in err) is shaped, err
        docs = list(yaml.safe_load_all(out.with_suffix(".yaml").read_text()))
        assert any(d.get("background_shaped") is shaped for d in docs), docs


@pytest.fixture
def camera_movie(tmp_path):
    """A movie of a camera with a 400 ADU offset and 0.5 e-/ADU from `dsir
    simulate`, whose TIFF states them (ImageJ "Info" lines), and the same
    frames in a TIFF that states none."""
    import tifffile

    stated = tmp_path / "stated.tif"
    assert main(["simulate", "-o", str(stated), "-n", "6", "--size", "32", "32", "--density", "1",
                 "--photons", "800:3000", "--gain", "2", "--base-level", "400", "--seed", "5"]) == 0
    raw = tmp_path / "raw.tif"
    tifffile.imwrite(raw, open_stack(stated).read(), photometric="minisblack")
    return stated, raw


def test_localize_uses_the_camera_the_file_states(camera_movie, tmp_path, capsys):
    """Without camera options the fits use the settings the TIFF states, say
    so once, and record where they came from (the protocol beside the CSV,
    in ThunderSTORM's names); the same settings given explicitly give the
    same table; options given win over the file's."""
    stated, raw = camera_movie
    capsys.readouterr()
    out = tmp_path / "from_file.csv"
    assert main(["localize", str(stated), "-o", str(out), "-q", "--pixel-size", "100"]) == 0
    err = capsys.readouterr().err
    assert err.count("camera settings from the metadata of") == 1
    assert "baseline 400 ADU, 0.5 e-/ADU, EM gain 1, QE 1, read noise 0 e-" in err
    assert "camera settings not given" not in err
    protocol = json.loads((tmp_path / "from_file-protocol.txt").read_text())
    assert protocol["napari-dsir"]["camera_origin"] == "metadata"
    from napari_dsir.io import open_stack
    from napari_dsir.io.tables import stated_frames

    assert stated_frames(out) == (0, len(open_stack(stated)))  # the frames the run covered, read back
    assert protocol["cameraSettings"]["offset"] == 400 and protocol["cameraSettings"]["photons2ADU"] == 0.5
    assert protocol["cameraSettings"]["isEmGain"] is False

    given = tmp_path / "given.csv"
    assert main(["localize", str(raw), "-o", str(given), "-q", "--pixel-size", "100",
                 "--baseline", "400", "--sensitivity", "0.5"]) == 0
    assert json.loads((tmp_path / "given-protocol.txt").read_text())["napari-dsir"]["camera_origin"] == "given"
    a, b = read_localizations(out), read_localizations(given)
    assert len(a) > 10
    np.testing.assert_allclose(a.photons, b.photons)
    np.testing.assert_allclose(a.uncertainty, b.uncertainty)
    again = tmp_path / "again.csv"  # a run's protocol (ThunderSTORM's cameraSettings) as the next one's camera
    assert main(["localize", str(raw), "-o", str(again), "-q", "--pixel-size", "100",
                 "--camera", str(tmp_path / "from_file-protocol.txt")]) == 0
    np.testing.assert_allclose(read_localizations(again).photons, a.photons)

    assumed = tmp_path / "assumed.csv"
    assert main(["localize", str(raw), "-o", str(assumed), "-q", "--pixel-size", "100"]) == 0
    assert "camera settings not given" in capsys.readouterr().err
    assert json.loads((tmp_path / "assumed-protocol.txt").read_text())["napari-dsir"]["camera_origin"] == "assumed"

    over = tmp_path / "over.hdf5"
    assert main(["localize", str(stated), "-o", str(over), "-q", "--pixel-size", "100", "--baseline", "390"]) == 0
    # the option given wins; the file's other settings stay under it, and the run says which
    assert "(em gain, qe, read noise, sensitivity, under those given)" in capsys.readouterr().err
    text = over.with_suffix(".yaml").read_text()
    assert "camera_origin: given" in text and "baseline: 390.0" in text and "sensitivity: 0.5" in text
    assert "Baseline: 390.0" in text and "Sensitivity: 0.5" in text  # Picasso's names too
    assert Camera.from_yaml(over.with_suffix(".yaml")) == Camera(390.0, 0.5, 1.0, 1.0)


def test_single_camera_options_go_over_what_the_movie_states(camera_movie, tmp_path, capsys):
    """`--sensitivity` alone on a movie that states its offset keeps the
    offset (before: the default 100 ADU, silently), says which settings came
    from the metadata, and gives the API's partial dict's result; a whole
    `Camera` is the whole camera."""
    from napari_dsir.run import reconstruct

    stated, raw = camera_movie
    out = tmp_path / "partial.csv"
    capsys.readouterr()
    assert main(["localize", str(stated), "-o", str(out), "-q", "--sensitivity", "0.25"]) == 0
    err = capsys.readouterr().err
    assert "camera settings from the metadata of" in err
    assert "(baseline, em gain, qe, read noise, under those given)" in err
    mine = json.loads((tmp_path / "partial-protocol.txt").read_text())["napari-dsir"]
    assert (mine["camera"]["baseline"], mine["camera"]["sensitivity"]) == (400.0, 0.25)
    assert mine["camera_origin"] == "given, metadata"
    api = reconstruct(stated, localize=True, camera={"sensitivity": 0.25})
    np.testing.assert_allclose(api.localizations.photons, read_localizations(out).photons, rtol=1e-5)
    np.testing.assert_allclose(api.info["camera"]["baseline"], 400.0)
    whole = reconstruct(stated, localize=True, camera=Camera(sensitivity=0.25))
    assert whole.info["camera"]["baseline"] == 100.0
    # on a movie that states nothing, the defaults under the options, as before
    capsys.readouterr()
    assert main(["localize", str(raw), "-o", str(tmp_path / "raw.csv"), "-q", "--sensitivity", "0.25"]) == 0
    assert "camera settings from the metadata" not in capsys.readouterr().err
    assert json.loads((tmp_path / "raw-protocol.txt").read_text())["napari-dsir"]["camera"]["baseline"] == 100.0
    # an impossible setting the movie states, under an option: said whose, and how to get past it
    import tifffile

    bad = tmp_path / "bad.tif"
    tifffile.imwrite(bad, open_stack(raw).read(), photometric="minisblack", metadata={"offset": 400, "qe": 0})
    assert main(["localize", str(bad), "-o", str(tmp_path / "bad.csv"), "-q", "--sensitivity", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "bad.tif: camera settings in the file metadata: camera quantum efficiency must be in (0, 1]" in err
    assert "(set the camera to override them)" in err
    assert main(["localize", str(bad), "-o", str(tmp_path / "bad.csv"), "-q", "--qe", "0.9"]) == 0
    # a baseline above the data: blamed on the file where it came from there, else on the option given
    high = tmp_path / "high.tif"
    tifffile.imwrite(high, open_stack(raw).read(), photometric="minisblack", metadata={"offset": 60000})
    assert main(["localize", str(high), "-o", str(tmp_path / "h.csv"), "-q", "--sensitivity", "0.5"]) == 2
    assert "high.tif: camera settings in the file metadata: camera baseline 60000 ADU" in capsys.readouterr().err
    assert main(["localize", str(stated), "-o", str(tmp_path / "h.csv"), "-q", "--baseline", "60000"]) == 2
    err = capsys.readouterr().err
    assert "camera baseline 60000 ADU" in err and "file metadata" not in err


def test_the_api_saves_a_run_as_dsir_localize_writes_it(camera_movie, tmp_path):
    """`run.save_localizations` (the Python API) writes the table and the
    protocol beside it byte for byte as `dsir localize -o` does for the same
    run: the camera, the model, the frames and the camera pixel size are
    stated either way (before, the API's `write_localizations` stated none)."""
    from napari_dsir.io import read_picasso
    from napari_dsir.run import reconstruct, save_localizations

    stated, _ = camera_movie
    for suffix in (".csv", ".hdf5"):
        cli, api = tmp_path / f"cli{suffix}", tmp_path / f"api{suffix}"
        assert main(["localize", str(stated), "-o", str(cli), "-q", "--frames", "1:5"]) == 0
        res = reconstruct(stated, localize=True, start=1, stop=5)
        assert save_localizations(res, api) == api
        beside = {".csv": "{}-protocol.txt", ".hdf5": "{}.yaml"}[suffix]
        if suffix == ".csv":
            assert api.read_bytes() == cli.read_bytes()
        else:
            np.testing.assert_array_equal(read_localizations(api).x, read_localizations(cli).x)
            assert read_picasso(api)[1][0]["Frames"] == 6  # the movie's length (Picasso's Frames), not the stop
        assert (tmp_path / beside.format("api")).read_text() == (tmp_path / beside.format("cli")).read_text()
    protocol = json.loads((tmp_path / "api-protocol.txt").read_text())
    assert protocol["cameraSettings"]["offset"] == 400 and protocol["cameraSettings"]["pixelSize"] == 100
    mine = protocol["napari-dsir"]
    assert mine["frames"] == [1, 5] and mine["camera_origin"] == "metadata" and mine["camera_pixel_size"] == 100
    assert mine["frame_shape"] == [32, 32] and mine["model"]
    with pytest.raises(DSIRError, match="already exists"):
        save_localizations(res, api)


def test_localize_reads_a_picasso_camera_config_against_micro_manager(camera_movie, tmp_path, capsys):
    """--camera takes Picasso's camera config.yaml: the movie's Micro-Manager
    metadata picks the camera and its sensitivity (the same table as the
    settings given); what the movie does not state is an error naming it,
    unless given as an option."""
    import tifffile

    stated, raw = camera_movie
    props = {"Camera": "Andor", "Andor-Output_Amplifier": "Conventional", "Andor-Pre-Amp-Gain": "Gain 2"}
    mm = tmp_path / "mm.tif"
    tifffile.imwrite(mm, open_stack(raw).read(), photometric="minisblack",
                     extratags=[(51123, "s", 0, json.dumps(props), False)])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"Cameras": {
        "Zyla": {"Baseline": 100, "Sensitivity": 2.0},
        "Andor": {"Baseline": 400, "Gain Property Name": "Gain",
                  "Sensitivity Categories": ["Output_Amplifier", "Pre-Amp-Gain"],
                  "Sensitivity": {"Conventional": {"Gain 1": 1.0, "Gain 2": 0.5}}}}}, sort_keys=False))
    base = ["localize", str(mm), "-q", "--pixel-size", "100", "--camera", str(config)]
    capsys.readouterr()
    assert main([*base, "-o", str(tmp_path / "p.csv")]) == 2
    assert "does not state Andor-Gain, the EM gain of camera 'Andor' (give --em-gain" in capsys.readouterr().err
    assert main([*base, "-o", str(tmp_path / "p.csv"), "--em-gain", "1"]) == 0
    protocol = json.loads((tmp_path / "p-protocol.txt").read_text())
    assert protocol["cameraSettings"]["offset"] == 400 and protocol["cameraSettings"]["photons2ADU"] == 0.5
    assert main(["localize", str(raw), "-o", str(tmp_path / "g.csv"), "-q", "--pixel-size", "100",
                 "--baseline", "400", "--sensitivity", "0.5"]) == 0
    a, b = read_localizations(tmp_path / "p.csv"), read_localizations(tmp_path / "g.csv")
    assert len(a) > 10
    np.testing.assert_allclose(a.photons, b.photons)
    capsys.readouterr()
    assert main(["localize", str(raw), "-o", str(tmp_path / "r.csv"), "-q", "--camera", str(config)]) == 2
    assert "lists 2 cameras ('Zyla', 'Andor') and the movie's metadata names no camera" in capsys.readouterr().err


def test_impossible_camera_settings_in_the_file(camera_movie, tmp_path, capsys):
    """A file stating an impossible setting: a clear error naming the file
    and the way past it, before any work; settings given get past it."""
    import tifffile

    stated, _ = camera_movie
    bad = tmp_path / "bad.tif"
    tifffile.imwrite(bad, open_stack(stated).read(), photometric="minisblack",
                     metadata={"offset": 400, "sensitivity": -0.5})  # tifffile's JSON description
    capsys.readouterr()
    out = tmp_path / "bad.csv"
    assert main(["localize", str(bad), "-o", str(out), "-q", "--pixel-size", "100"]) == 2
    err = capsys.readouterr().err
    assert "bad.tif" in err and "camera settings in the file metadata" in err and "sensitivity" in err
    assert "set the camera to override them" in err
    assert not out.exists() and not (tmp_path / "bad-protocol.txt").exists()
    assert main(["localize", str(bad), "-o", str(out), "-q", "--pixel-size", "100",
                 "--baseline", "400", "--sensitivity", "0.5"]) == 0


def test_an_existing_protocol_is_refused_before_any_work(small_stack, tiny_checkpoint, tmp_path, capsys):
    """The protocol beside a CSV (and the YAML beside an HDF5 file) is an
    output too: an existing one is refused before the run, nothing written."""
    protocol = tmp_path / "locs-protocol.txt"
    protocol.write_text("precious")
    yaml_file = tmp_path / "p.yaml"
    yaml_file.write_text("precious")
    for name, existing in (("locs.csv", protocol), ("p.hdf5", yaml_file)):
        rc = main(["localize", str(small_stack), "-o", str(tmp_path / name), "--model", str(tiny_checkpoint), "-q"])
        err = capsys.readouterr().err
        assert rc == 2 and "already exists" in err and str(existing) in err
        assert existing.read_text() == "precious" and not (tmp_path / name).exists()


def test_train_overwrite_keeps_the_checkpoint_it_replaces_until_it_is_done(tmp_path, capsys, monkeypatch):
    """An interrupted --overwrite training leaves the finished model it was
    to replace as NAME.previous.pt (its best epoch so far is NAME.pt, as
    any interrupted training's); a finished one removes it."""
    import napari_dsir.train as train_mod

    from .conftest import digest

    out = tmp_path / "m.pt"
    argv = ["train", "-o", str(out), "--arch", "shuffle", "--channels", "4", "--context", "4", "--movies",
            "--n-train", "16", "--n-val", "16", "--batch-size", "8", "--png-every", "0", "--device", "cpu",
            "--movie-error-movies", "0", "-q"]
    assert main(argv + ["--epochs", "1"]) == 0
    finished = digest(out)
    calls = []
    epoch = train_mod.train_epoch

    def interrupted_second_epoch(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return epoch(*a, **kw)

    monkeypatch.setattr(train_mod, "train_epoch", interrupted_second_epoch)
    capsys.readouterr()
    assert main(argv + ["--epochs", "3", "--overwrite"]) == 130
    err = capsys.readouterr().err
    previous = tmp_path / "m.previous.pt"
    assert "m.pt: the finished checkpoint is kept as m.previous.pt until this training finishes" in err
    assert f"the checkpoint it was to replace is {previous}" in err
    assert digest(previous) == finished and out.is_file() and digest(out) != finished
    # run again and interrupted again: the finished one stays aside, never replaced by the unfinished
    calls.clear()
    assert main(argv + ["--epochs", "3", "--overwrite"]) == 130
    assert digest(previous) == finished
    assert "the finished checkpoint is kept as m.previous.pt" in capsys.readouterr().err
    monkeypatch.setattr(train_mod, "train_epoch", epoch)
    assert main(argv + ["--epochs", "1", "--overwrite"]) == 0
    assert not previous.exists() and out.is_file()
    # refused before its first epoch: the checkpoint is put back where it was
    done = digest(out)
    assert main(argv + ["--epochs", "1", "--overwrite", "--init", str(tmp_path / "missing.pt")]) == 2
    assert digest(out) == done and not previous.exists()
    # interrupted while its data are made (no state saved yet by this run: the m.last.pt beside it is the
    # finished training's): put back, and no resume offered (before: a resume that the old state refused)
    assert (tmp_path / "m.last.pt").is_file()

    def interrupted_at_once(*a, **kw):
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(train_mod, "iter_train", interrupted_at_once)
    capsys.readouterr()
    assert main(argv + ["--epochs", "1", "--overwrite"]) == 130
    assert "interrupted before its training began (while its data were made); nothing to resume" in \
        capsys.readouterr().err
    assert digest(out) == done and not previous.exists()
    # no -o on a fresh account: the default models folder is made (before: "... does not exist")
    home = tmp_path / "fresh"
    monkeypatch.setattr(train_mod, "user_data_dir", lambda: home)
    assert main(["train", "--epochs", "1", "-q"]) == 130
    assert (home / "models").is_dir()
    assert main(["train", "-o", str(tmp_path), "--epochs", "1"]) == 2
    assert "a folder; give the checkpoint's file name" in capsys.readouterr().err


def test_a_run_that_finds_nothing_says_how_to_find_more(small_stack, tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "l.csv"
    assert main(["localize", str(small_stack), "-o", str(out), "--model", str(tiny_checkpoint), "--threshold", "1e9",
                 "--refine", "none", "-q"]) == 0
    captured = capsys.readouterr()
    assert "0 localizations" in captured.out
    assert "dsir: warning: no localizations above the threshold 1e+09: if the movie holds emitters, lower the " \
           "threshold (--threshold" in captured.err


def test_train_refuses_a_name_whose_companions_would_be_too_long(tmp_path, capsys):
    """NAME.previous.pt and NAME.last.pt are checked with NAME.pt before any epoch."""
    out = tmp_path / ("a" * 247 + ".pt")  # 250 bytes: itself fits, NAME.previous.pt does not
    assert main(["train", "-o", str(out), "--epochs", "1", "-q"]) == 2
    assert ".previous.pt: the file name is too long (259 bytes" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
