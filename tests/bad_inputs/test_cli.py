"""The catalogue of bad inputs (CLI side): each case exits 2 with one clear
line naming the file and the problem, leaves no output file and never
modifies its input. The napari side of the catalogue is in test_napari.py
beside this file; the property and fuzz tests in tests/test_properties.py."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_dsir.cli import main
from napari_dsir.io import open_stack

from ..conftest import digest, make_bad_stack


def _run_cli(argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    cap = capsys.readouterr()
    return rc, cap.out, cap.err.strip()


def _expect_clean_failure(capsys, tmp_path, input_path, argv, needle):
    before = digest(input_path) if os.path.exists(input_path) else None
    listing = sorted(os.listdir(tmp_path))
    rc, out, err = _run_cli(argv, capsys)
    assert rc == 2, (rc, err)
    lines = [ln for ln in err.splitlines() if not ln.startswith("dsir: warning:")]
    assert len(lines) == 1, err  # one line for the error (warnings, e.g. the pixel size, aside)
    assert lines[0].startswith("dsir: error:")
    assert "Traceback" not in err
    assert needle.lower() in lines[0].lower(), err
    err = lines[0]
    assert sorted(os.listdir(tmp_path)) == listing  # no output, no temporary file left
    if before is not None:
        assert digest(input_path) == before
    return err


# ------------------------------------------------------------------ stacks


STACK_CASES = {
    "not_a_tiff": "not a readable TIFF",
    "truncated": "truncated",
    "truncated_imagej": "its ImageJ header states 12 images and 1 can be read",
    "truncated_compressed": "its tifffile description states 20 images and 1 can be read",
    "zero_frames": "zero frames",
    "rgb": "RGB",
    "5d": "5-D",
    "mixed_sizes": "differs",
    "mixed_types": "one pixel type",
    "empty_folder": "no .tif",
    "complex": "pixel type",
    "ome_part_missing": "not found beside it",
    "multi_position": "holds 2 image series (0: 4x16x16, 1: 4x16x16): several positions",
}


@pytest.mark.parametrize("case", sorted(STACK_CASES))
@pytest.mark.parametrize("command", ["reconstruct", "localize"])
def test_bad_stack(tmp_path, capsys, tiny_checkpoint, case, command):
    work = tmp_path / "work"
    work.mkdir()
    src = make_bad_stack(work, case)
    out = work / ("out.tif" if command == "reconstruct" else "out.csv")
    err = _expect_clean_failure(capsys, work, src,
                                [command, str(src), "-o", str(out), "--model", str(tiny_checkpoint), "-q"],
                                STACK_CASES[case])
    assert src.name in err


def test_unreadable_file(tmp_path, capsys, tiny_checkpoint, monkeypatch):
    """A file without read permission. Root reads anything, so the refusal
    of the operating system is simulated where the file is opened."""
    p = tmp_path / "locked.tif"
    tifffile.imwrite(p, np.ones((2, 16, 16), np.uint16), photometric="minisblack")
    if os.geteuid() == 0:
        import napari_dsir.io.stacks as nio

        def refuse(path, *a, **kw):
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(nio.tifffile, "TiffFile", refuse)
    else:
        p.chmod(0)
    try:
        _expect_clean_failure(capsys, tmp_path, p, ["reconstruct", str(p), "-o", str(tmp_path / "o.tif"),
                                                    "--model", str(tiny_checkpoint), "-q"], "permission denied")
    finally:
        p.chmod(0o644)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float64, np.uint16])
def test_accepted_pixel_types_and_single_frame(tmp_path, capsys, tiny_checkpoint, dtype):
    p = tmp_path / "ok.tif"
    tifffile.imwrite(p, (np.arange(16 * 16).reshape(16, 16) % 97 + 5).astype(dtype), photometric="minisblack")
    before = digest(p)
    rc, out, err = _run_cli(["reconstruct", str(p), "-o", str(tmp_path / "sr.tif"), "--model",
                             str(tiny_checkpoint), "-q"], capsys)
    assert rc == 0, err
    assert open_stack(tmp_path / "sr.tif").shape == (1, 128, 128)
    assert "no pixel size" in err and "100" in err  # the default, said in a warning
    assert digest(p) == before


# ------------------------------------------------------------------ tables

TABLE_CASES = {
    "missing_columns": ("frame,x [nm]\n1,2\n", "missing column"),
    "unknown_units": ("frame,x [parsec],y [parsec]\n1,2,3\n", "unknown unit"),
    "px_without_pixel_size": ("frame,x [px],y [px]\n1,2,3\n", "pixel size"),
    "non_numeric": ("frame,x,y\n1,2,three\n", "non-numeric"),
    "empty": ("", "empty"),
    "zero_frame": ("frame,x,y\n0,2,3\n", "1-based"),
    "folder": (None, "a folder, not a table"),
}


@pytest.mark.parametrize("case", sorted(TABLE_CASES))
def test_bad_tables(tmp_path, capsys, case):
    text, needle = TABLE_CASES[case]
    gt = tmp_path / "gt.csv"
    gt.write_text("frame,x,y\n1,100,100\n")
    bad = tmp_path / f"{case}.csv"
    if text is None:
        bad.mkdir()
    else:
        bad.write_text(text)
    err = _expect_clean_failure(capsys, tmp_path, bad, ["evaluate", str(gt), str(bad)], needle)
    assert bad.name in err


@pytest.mark.parametrize("command", ["evaluate", "render", "resolution", "drift"])
def test_a_table_in_pixels_names_the_commands_option(tmp_path, capsys, command):
    """The error names the option that gives the pixel size, which differs
    by command (it said "give the pixel size")."""
    bad = tmp_path / "px.csv"
    bad.write_text("frame,x [px],y [px]\n1,2,3\n2,4,5\n")
    argv = {"evaluate": ["evaluate", str(bad), str(bad)], "render": ["render", str(bad), "-o", str(tmp_path / "r.tif")],
            "resolution": ["resolution", str(bad)], "drift": ["drift", str(bad), "-o", str(tmp_path / "d.csv")]}
    option = "--pixel-size" if command == "evaluate" else "--camera-pixel-size"
    _expect_clean_failure(capsys, tmp_path, bad, argv[command], f"to convert it ({option} NM)")


def test_a_table_with_a_header_and_no_rows(tmp_path, capsys):
    """An empty result (what a run that found nothing writes) scores recall
    0; as the ground truth it is refused."""
    gt, empty = tmp_path / "gt.csv", tmp_path / "empty.csv"
    gt.write_text("frame,x,y\n1,100,100\n")
    empty.write_text("frame,x,y\n")
    rc, out, err = _run_cli(["evaluate", str(gt), str(empty)], capsys)
    assert rc == 0 and "recall 0.000" in out and "(TP 0, FP 0, FN 1)" in out, err
    err = _expect_clean_failure(capsys, tmp_path, empty, ["evaluate", str(empty), str(gt)], "no rows")
    assert empty.name in err


def test_unitless_positions_like_pixels_are_warned_of(tmp_path, capsys):
    gt, pred = tmp_path / "gt.csv", tmp_path / "pred.csv"
    gt.write_text("frame,x,y\n1,10,10\n2,50,50\n")
    pred.write_text("frame,x [nm],y [nm]\n1,10,10\n")
    rc, out, err = _run_cli(["evaluate", str(gt), str(pred)], capsys)
    # once (the other warning: the table states no frame range, and the truth reaches past its frames)
    assert rc == 0 and err.count("x and y name no unit") == 1 and f"{gt}: x and y name no unit" in err, err
    rc, out, err = _run_cli(["render", str(gt), "-o", str(tmp_path / "sr.tif"), "--pixel-size", "5"], capsys)
    assert rc == 0 and "x [px]" in err, err


def test_a_render_beyond_the_free_memory_is_refused(tmp_path, capsys, monkeypatch):
    import napari_dsir.render as r

    table = tmp_path / "locs.csv"
    table.write_text("frame,x [nm],y [nm]\n1,100,100\n2,6300,6300\n")
    monkeypatch.setattr(r, "available_memory", lambda: 10_000_000)  # 10 MB free
    argv = ["render", str(table), "-o", str(tmp_path / "sr.tif"), "--pixel-size", "5"]
    err = _expect_clean_failure(capsys, tmp_path, table, argv, "1261 x 1261 px at 5 nm/px: it needs about 45 MB")
    assert "10 MB is free; use a larger pixel size" in err


def test_tables_px_bom_crlf_semicolon_are_read(tmp_path, capsys):
    gt = tmp_path / "gt.csv"
    gt.write_bytes("\ufeffframe;x [px];y [px]\r\n1;1.0;1.0\r\n2;5.0;5.0\r\n".encode())
    pred = tmp_path / "pred.csv"
    pred.write_text("frame\tx [nm]\ty [nm]\n1\t105\t100\n2\t500\t500\n")
    rc, out, err = _run_cli(["evaluate", str(gt), str(pred), "--pixel-size", "100", "--json"], capsys)
    assert rc == 0, err
    import json

    m = json.loads(out)["metrics"][0]
    assert m["tp"] == 2 and m["rmse"] == pytest.approx(np.sqrt(25 / 2))


# ------------------------------------------------------------------ models


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/napari_dsir_pwned",))


def _make_model(tmp_path, case, tiny_checkpoint):
    p = tmp_path / f"{case}.pt"
    if case == "not_a_checkpoint":
        p.write_text("hello")
    elif case == "a_table":  # a ground-truth CSV given as --model
        p = tmp_path / "gt.csv"
        p.write_text('"id","frame","x [nm]","y [nm]"\n1,1,100,100\n')
    elif case == "resume_state":  # what an interrupted training leaves beside its checkpoint
        p = tmp_path / "m.last.pt"
        torch.save({"state_dict": {}, "optimizer": {}, "epoch": 3, "best": 1.0, "history": {}}, p)
    elif case == "binary_of_another_kind":
        p.write_bytes(b"II*\x00" + bytes(100))  # a TIFF
    elif case == "code":
        torch.save({"state_dict": _Evil()}, p)
    elif case == "other_shape":
        ck = torch.load(tiny_checkpoint, weights_only=True)
        ck["arch_params"]["decoder"] = [2, 2, 2]
        torch.save(ck, p)
    elif case == "other_arch":
        torch.save({"fc.weight": torch.zeros(3, 3)}, p)
    elif case == "truncated":
        data = tiny_checkpoint.read_bytes()
        p.write_bytes(data[: len(data) * 2 // 3])
    return p


MODEL_CASES = {
    "not_a_checkpoint": "not a PyTorch checkpoint (.pt): a text file",
    "a_table": "not a PyTorch checkpoint (.pt): a text file",
    "binary_of_another_kind": "not a PyTorch checkpoint (.pt); give",
    "resume_state": "the state a training resumes from, not a model: give ",
    "code": "refused",
    "other_shape": "do not fit",
    "other_arch": "not a napari-dsir checkpoint",
    "truncated": "truncated",
}


@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_bad_models(tmp_path, capsys, tiny_checkpoint, case):
    work = tmp_path / "work"
    work.mkdir()
    stack = work / "ok.tif"
    tifffile.imwrite(stack, np.ones((2, 16, 16), np.uint16), photometric="minisblack")
    model = _make_model(work, case, tiny_checkpoint)
    if os.path.exists("/tmp/napari_dsir_pwned"):
        os.remove("/tmp/napari_dsir_pwned")
    err = _expect_clean_failure(capsys, work, model,
                                ["reconstruct", str(stack), "-o", str(work / "o.tif"), "--model", str(model), "-q"],
                                MODEL_CASES[case])
    assert model.name in err
    assert not os.path.exists("/tmp/napari_dsir_pwned")


def test_legacy_prefix_with_a_napari_dsir_file_is_refused_clearly(tmp_path, capsys, tiny_checkpoint):
    stack = tmp_path / "ok.tif"
    tifffile.imwrite(stack, np.ones((2, 16, 16), np.uint16), photometric="minisblack")
    _expect_clean_failure(capsys, tmp_path, stack, ["reconstruct", str(stack), "-o", str(tmp_path / "o.tif"),
                                                    "--model", f"legacy:{tiny_checkpoint}", "-q"],
                          "without the legacy: prefix")


# ------------------------------------------------------------------ each architecture, the wrong loader


def _arch_file(tmp_path, arch, dsir_ckpt, shuffle_ckpt):
    """A file of each architecture: napari-dsir checkpoints of the DSIR
    auto-encoder and of the fast network, and an original (2018) state dict."""
    if arch == "dsir":
        return dsir_ckpt
    if arch == "shuffle":
        return shuffle_ckpt
    from napari_dsir.model import LegacyDSIR

    p = tmp_path / "original.pt"
    torch.save(LegacyDSIR().state_dict(), p)
    return p


WRONG_LOADER = {
    # (architecture of the file, how it is given): the one-line error
    ("dsir", "legacy"): "without the legacy: prefix",
    ("shuffle", "legacy"): "without the legacy: prefix",
    ("dsir", "as_shuffle"): "bad architecture parameters",
    ("shuffle", "as_dsir"): "bad architecture parameters",
    ("shuffle", "other_upsampling"): "fixed at up-sampling 8",
    ("shuffle", "no_metadata"): "not a napari-dsir checkpoint",
    ("original", "as_shuffle_state"): "not a napari-dsir checkpoint",
}


@pytest.mark.parametrize("arch, how", sorted(WRONG_LOADER))
def test_checkpoint_of_each_architecture_given_to_the_wrong_loader(tmp_path, capsys, tiny_checkpoint,
                                                                    tiny_shuffle_checkpoint, arch, how):
    work = tmp_path / "work"
    work.mkdir()
    stack = work / "ok.tif"
    tifffile.imwrite(stack, np.ones((2, 16, 16), np.uint16), photometric="minisblack")
    src = _arch_file(tmp_path, arch, tiny_checkpoint, tiny_shuffle_checkpoint)
    spec = str(src)
    if how == "legacy":
        spec = f"legacy:{src}"
    elif how in ("as_shuffle", "as_dsir", "other_upsampling", "no_metadata", "as_shuffle_state"):
        ck = torch.load(src, weights_only=True)
        if how == "as_shuffle":
            ck["arch"] = "shuffle"
        elif how == "as_dsir":
            ck["arch"] = "dsir"
        elif how == "other_upsampling":
            ck["upsampling"] = 4
        elif how == "no_metadata":
            ck = ck["state_dict"]
        else:  # an original file's weights in a fast-network checkpoint
            shuffle = torch.load(tiny_shuffle_checkpoint, weights_only=True)
            ck = {**shuffle, "state_dict": ck, "format": "other"}
        spec = str(work / f"{how}.pt")
        torch.save(ck, spec)
    err = _expect_clean_failure(capsys, work, stack,
                                ["reconstruct", str(stack), "-o", str(work / "o.tif"), "--model", spec, "-q"],
                                WRONG_LOADER[(arch, how)])
    assert Path(spec.removeprefix("legacy:")).name in err


def test_original_weights_given_without_the_prefix_load_as_the_original(tmp_path, capsys):
    from napari_dsir.model import LegacyDSIR

    p = tmp_path / "original.pt"
    torch.save(LegacyDSIR().state_dict(), p)
    stack = tmp_path / "ok.tif"
    tifffile.imwrite(stack, np.random.default_rng(0).poisson(100, (2, 16, 16)).astype(np.uint16))
    rc, _, err = _run_cli(["reconstruct", str(stack), "-o", str(tmp_path / "o.tif"), "--model", str(p), "-q"],
                          capsys)
    assert rc == 0, err


# ------------------------------------------------------------------ devices


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(tmp_path, capsys, tiny_checkpoint):
    stack = tmp_path / "ok.tif"
    tifffile.imwrite(stack, np.ones((2, 16, 16), np.uint16), photometric="minisblack")
    _expect_clean_failure(capsys, tmp_path, stack, ["reconstruct", str(stack), "-o", str(tmp_path / "o.tif"),
                                                    "--device", "cuda", "--model", str(tiny_checkpoint), "-q"],
                          "no CUDA")


# ------------------------------------------------------------------ outputs


def test_disk_full_gives_clear_error_and_no_partial_file(tmp_path, capsys, tiny_checkpoint, monkeypatch):
    stack = tmp_path / "ok.tif"
    tifffile.imwrite(stack, np.ones((2, 16, 16), np.uint16), photometric="minisblack")
    import errno

    import napari_dsir.io.files as nio

    real = nio.tifffile.imwrite

    def full_disk(path, *a, **kw):
        if str(path).endswith(".part"):
            with open(path, "wb") as fh:
                fh.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, *a, **kw)

    monkeypatch.setattr(nio.tifffile, "imwrite", full_disk)
    _expect_clean_failure(capsys, tmp_path, stack, ["reconstruct", str(stack), "-o", str(tmp_path / "o.tif"),
                                                    "--model", str(tiny_checkpoint), "-q"], "no space left")


def test_output_folder_missing(tmp_path, capsys, tiny_checkpoint):
    stack = tmp_path / "ok.tif"
    tifffile.imwrite(stack, np.ones((2, 16, 16), np.uint16), photometric="minisblack")
    _expect_clean_failure(capsys, tmp_path, stack, ["reconstruct", str(stack), "-o", str(tmp_path / "nope" / "o.tif"),
                                                    "--model", str(tiny_checkpoint), "-q"], "does not exist")


# ------------------------------------------------------------------ outputs

#: outputs that would replace an input, come out in another format than
#: their name says, or land on each other: (argv after the stack, needle);
#: "STACK" stands for the input movie's path, "DIR" for the test's folder
OUTPUT_CASES = {
    "sum_image_over_the_movie": (["reconstruct", "-o", "STACK", "--overwrite"], "is the input"),
    "image_of_localize_over_the_movie": (["localize", "-o", "DIR/l.csv", "--image", "STACK", "--overwrite"],
                                         "is the input"),
    "table_named_as_a_tiff": (["localize", "-o", "DIR/l.tif"], "the table is written as .csv"),
    "table_over_the_movie": (["localize", "-o", "STACK", "--overwrite"], "the table is written as"),
    "image_named_as_a_table": (["reconstruct", "-o", "DIR/sum.csv"], "the image is written as .tif"),
    "frames_output_on_the_sum_image": (["reconstruct", "-o", "DIR/s.tif", "--frames-output", "DIR/s.tif"],
                                       "two outputs"),
    "camera_file_over_written": (["localize", "-o", "DIR/cam.hdf5", "--camera", "DIR/cam.yaml", "--overwrite"],
                                 "is the input"),
}


@pytest.mark.parametrize("case", sorted(OUTPUT_CASES))
def test_bad_outputs(tmp_path, capsys, tiny_checkpoint, case):
    stack = tmp_path / "movie.tif"
    tifffile.imwrite(stack, np.full((2, 16, 16), 300, np.uint16), photometric="minisblack")
    (tmp_path / "cam.yaml").write_text("baseline: 100\n")
    before = digest(tmp_path / "cam.yaml")
    opts, needle = OUTPUT_CASES[case]
    argv = [a.replace("STACK", str(stack)).replace("DIR", str(tmp_path)) for a in opts]
    argv = [argv[0], str(stack), *argv[1:], "--model", str(tiny_checkpoint), "-q"]
    _expect_clean_failure(capsys, tmp_path, stack, argv, needle)
    assert digest(tmp_path / "cam.yaml") == before


def test_a_tiff_output_inside_the_input_folder_is_refused(tmp_path, capsys, tiny_checkpoint):
    """The next run on the folder would read the sum image as a frame."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(2):
        tifffile.imwrite(folder / f"{i:03d}.tif", np.full((16, 16), 300, np.uint16))
    _expect_clean_failure(capsys, folder, folder / "000.tif", ["reconstruct", str(folder), "-o",
                                                               str(folder / "sum.tif"), "--model",
                                                               str(tiny_checkpoint), "-q"], "inside the input folder")


def test_frames_smaller_than_the_fitting_window_ask_for_no_fits(tmp_path, capsys, tiny_checkpoint):
    """Frames of 5x5 px with a bright spot in each (enough for the PSF's
    measurement, which needs a fit's window too: it is skipped): the fits are
    refused with the way out, which works, and so does a sum image; at a
    pixel size in another unit the refusal asks to check it."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:5, :5]
    shifts = rng.uniform(-0.5, 0.5, (40, 2))
    spots = [3000 * np.exp(-((yy - 2 - dy) ** 2 + (xx - 2 - dx) ** 2) / 2) for dy, dx in shifts]
    p = tmp_path / "five.tif"
    tifffile.imwrite(p, (100 + rng.poisson(20 + np.array(spots))).astype(np.uint16), photometric="minisblack")
    argv = ["localize", str(p), "-o", str(tmp_path / "l.csv"), "--model", str(tiny_checkpoint), "-q"]
    _expect_clean_failure(capsys, tmp_path, p, argv, "five.tif: frames of 5x5 px are smaller than the 7 px fitting "
                          "window: localize them without the fits (--refine none")
    _expect_clean_failure(capsys, tmp_path, p, argv + ["--pixel-size", "0.1"], "fitting window at 0.1 nm pixels: "
                          "check the pixel size (--pixel-size, in nm), or localize them without the fits")
    for extra in (["--refine", "none"], ["--refine", "none", "-o", str(tmp_path / "l.csv"), "--overwrite"]):
        rc, _, err = _run_cli(argv + extra, capsys)
        assert rc == 0, err
    rc, _, err = _run_cli(["reconstruct", str(p), "-o", str(tmp_path / "s.tif"), "--model", str(tiny_checkpoint),
                           "-q"], capsys)
    assert rc == 0, err


def test_the_psf_is_not_measured_on_frames_smaller_than_a_fit(rng):
    from napari_dsir.psf import measure_fwhm

    yy, xx = np.mgrid[:6, :6]
    frames = 100 + rng.poisson(20 + 3000 * np.exp(-((yy - 2.5) ** 2 + (xx - 2.5) ** 2) / 2), (40, 6, 6))
    assert measure_fwhm(frames, 100.0) is None
    big = np.tile(frames, (1, 2, 2))  # 12x12 px: the same spots measured
    assert measure_fwhm(big, 100.0) is not None


def test_a_baseline_above_the_median_pixel_is_warned_of_by_the_run(tmp_path, capsys, tiny_checkpoint):
    p = tmp_path / "movie.tif"
    rng = np.random.default_rng(1)
    tifffile.imwrite(p, (100 + rng.poisson(20, (4, 16, 16))).astype(np.uint16), photometric="minisblack")
    rc, _, err = _run_cli(["localize", str(p), "-o", str(tmp_path / "l.csv"), "--model", str(tiny_checkpoint),
                           "--baseline", "125", "-q"], capsys)
    assert rc == 0, err
    assert "movie.tif: camera baseline 125 ADU is above the median pixel (120 ADU)" in err


def test_a_folder_with_a_gap_in_its_numbering_is_warned_of(tmp_path, capsys, tiny_checkpoint):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (1, 2, 4):
        tifffile.imwrite(folder / f"{i:03d}.tif", np.full((16, 16), 300, np.uint16))
    rc, out, err = _run_cli(["reconstruct", str(folder), "-o", str(tmp_path / "sr.tif"), "--model",
                             str(tiny_checkpoint), "-q"], capsys)
    assert rc == 0, err
    assert "the frame files are numbered 1..4 with 1 missing (3); frames are counted in order, 1 to 3" in err


# ------------------------------------------------------------------ camera

CAMERA_CASES = {
    "negative_gain": (["--em-gain", "-5"], "EM gain must be > 0"),
    "zero_sensitivity": (["--sensitivity", "0"], "sensitivity"),
    "qe_above_one": (["--qe", "1.5"], "quantum efficiency"),
    "qe_zero": (["--qe", "0"], "quantum efficiency"),
    "baseline_above_data": (["--baseline", "5000"], "baseline"),
    "nan_baseline": (["--baseline", "nan"], "baseline"),
    "unknown_key_in_file": ("gain_of_camera: 3\n", "unknown camera setting"),
    "file_not_a_mapping": ("- 1\n- 2\n", "camera"),
    "missing_file": (None, "no such"),
    # a Picasso .hdf5 (or a movie) chosen instead of the YAML beside it
    "binary_file": (b"\x89HDF\r\n\x1a\n\x00\x00\x00\x00", "not a text (YAML) file"),
    "not_utf8": (b"baseline: 100 # caf\xe9\n", "not a UTF-8 text"),
    # Picasso's camera config.yaml, against a movie with no Micro-Manager metadata
    "picasso_config_of_several_cameras": ("Cameras:\n  A: {Baseline: 100, Sensitivity: 1}\n"
                                          "  B: {Baseline: 100, Sensitivity: 2}\n", "names no camera"),
    "picasso_sensitivity_by_category": ("Cameras:\n  A:\n    Baseline: 100\n    Sensitivity Categories: [Mode]\n"
                                        "    Sensitivity: {fast: 1.5, slow: 0.5}\n", "A-Mode"),
    "picasso_config_without_baseline": ("Cameras:\n  A: {Sensitivity: 1}\n", "no Baseline"),
    "picasso_config_of_no_camera": ("Cameras: {}\n", "no camera"),
}


#: the commands that take camera settings: with the fits, and without them
#: (where the settings take an uneven illumination out of the network's input)
CAMERA_COMMANDS = {
    "localize": ["localize", "-o", "l.csv"],
    "localize_refine_none": ["localize", "-o", "l.csv", "--refine", "none"],
    "reconstruct": ["reconstruct", "-o", "sr.tif"],
}


@pytest.mark.parametrize("command", sorted(CAMERA_COMMANDS))
@pytest.mark.parametrize("case", sorted(CAMERA_CASES))
def test_bad_camera(tmp_path, capsys, tiny_checkpoint, case, command):
    stack = tmp_path / "ok.tif"
    tifffile.imwrite(stack, np.full((2, 16, 16), 300, np.uint16), photometric="minisblack")
    opts, needle = CAMERA_CASES[case]
    if not isinstance(opts, list):
        cam = tmp_path / "camera.yaml"
        if isinstance(opts, bytes):
            cam.write_bytes(opts)
        elif opts is not None:
            cam.write_text(opts)
        opts = ["--camera", str(cam)]
    sub, o, out, *rest = CAMERA_COMMANDS[command]
    argv = [sub, str(stack), o, str(tmp_path / out), *rest, "--model", str(tiny_checkpoint), "-q", *opts]
    _expect_clean_failure(capsys, tmp_path, stack, argv, needle)


#: impossible camera settings stated in the file's own metadata (read by the fits)
FILE_CAMERA_CASES = {
    "negative_sensitivity": ({"offset": 100, "sensitivity": -0.5}, "sensitivity"),
    "qe_above_one": ({"QE": 1.7}, "quantum efficiency"),
    "negative_em_gain": ({"EM gain": -3}, "EM gain must be > 0"),
    "text_value": ({"offset": "100", "read noise": "-2"}, "read noise"),
    "baseline_above_data": ({"offset": 5000}, "baseline"),
}


@pytest.mark.parametrize("case", sorted(FILE_CAMERA_CASES))
def test_bad_camera_in_the_file_metadata(tmp_path, capsys, tiny_checkpoint, case):
    stack = tmp_path / "stated.tif"
    meta, needle = FILE_CAMERA_CASES[case]
    tifffile.imwrite(stack, np.full((2, 16, 16), 300, np.uint16), photometric="minisblack", metadata=meta)
    argv = ["localize", str(stack), "-o", str(tmp_path / "l.csv"), "--model", str(tiny_checkpoint), "-q"]
    err = _expect_clean_failure(capsys, tmp_path, stack, argv, needle)
    assert "stated.tif" in err


def test_camera_file_and_options_are_used_and_stored(tmp_path, capsys, tiny_checkpoint):
    import yaml

    stack = tmp_path / "ok.tif"
    rng = np.random.default_rng(0)
    tifffile.imwrite(stack, rng.poisson(20, (3, 16, 16)).astype(np.uint16) + 400, photometric="minisblack")
    cam = tmp_path / "camera.yaml"
    cam.write_text("offset: 400\nconversion: 0.5\n")
    out = tmp_path / "l.hdf5"
    rc, _, err = _run_cli(["localize", str(stack), "-o", str(out), "--model", str(tiny_checkpoint), "-q",
                           "--camera", str(cam), "--qe", "0.9", "--threshold", "0"], capsys)
    assert rc == 0, err
    assert "camera settings not given" not in err  # the camera was given
    docs = list(yaml.safe_load_all(out.with_suffix(".yaml").read_text()))
    text = yaml.safe_dump(docs)
    assert "baseline: 400.0" in text and "sensitivity: 0.5" in text and "qe: 0.9" in text


def test_outputs_that_cannot_be_written_are_refused_before_the_work(tmp_path, capsys, tiny_checkpoint, monkeypatch):
    """A file name too long for the folder, or a folder that cannot be
    written in (read-only, /sys): refused by name before the run, not an
    "unexpected error" after it; a name of 250 characters, whose temporary
    name would be longer than the folder takes, is written."""
    import errno

    import napari_dsir.io.files as files

    p = tmp_path / "movie.tif"
    tifffile.imwrite(p, np.full((2, 16, 16), 300, np.uint16), photometric="minisblack")
    run = ["reconstruct", str(p), "--model", str(tiny_checkpoint), "-q", "-o"]
    _expect_clean_failure(capsys, tmp_path, p, run + [str(tmp_path / ("a" * 300 + ".tif"))],
                          "the file name is too long (304 bytes; the folder takes 255)")
    long_ok = tmp_path / ("b" * 250 + ".tif")
    rc, _, err = _run_cli(run + [str(long_ok)], capsys)
    assert rc == 0 and long_ok.is_file(), err
    long_ok.unlink()

    def read_only(*a, **kw):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(files.tempfile, "mkstemp", read_only)
    _expect_clean_failure(capsys, tmp_path, p, run + [str(tmp_path / "sr.tif")],
                          f"cannot write in the folder {tmp_path} (Read-only file system): choose another folder")


def _cli_in_a_process(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_termination_while_writing_leaves_no_partial_file(tmp_path, tiny_checkpoint, signame):
    """SIGTERM (a batch system's time limit, kill) or SIGHUP (a closed
    terminal) while the output is written: the temporary file is removed,
    as on Ctrl-C, and the exit code is 128 + the signal's number."""
    p = tmp_path / "movie.tif"
    tifffile.imwrite(p, np.full((2, 16, 16), 300, np.uint16), photometric="minisblack")
    before = sorted(os.listdir(tmp_path))
    code = f"""
import os, signal, sys
import napari_dsir.io.files as files
from napari_dsir.cli import main
real = files.os.replace
def killed_before_the_rename(a, b):
    assert os.path.exists(a)  # the partial file is there
    os.kill(os.getpid(), signal.{signame})
    real(a, b)
files.os.replace = killed_before_the_rename
sys.exit(main(["localize", "movie.tif", "-o", "locs.csv", "--model", {str(tiny_checkpoint)!r}, "-q"]))
"""
    r = _cli_in_a_process(code, tmp_path)
    assert r.returncode == 128 + getattr(signal, signame), r.stderr
    assert "dsir: terminated" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert sorted(os.listdir(tmp_path)) == before


def test_termination_of_a_training_saves_the_state_to_resume_from(tmp_path):
    code = """
import os, signal, sys
import napari_dsir.train as train
from napari_dsir.cli import main
epoch, calls = train.train_epoch, []
def killed_in_the_second_epoch(*a, **kw):
    calls.append(1)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGTERM)
    return epoch(*a, **kw)
train.train_epoch = killed_in_the_second_epoch
sys.exit(main(["train", "-o", "m.pt", "--arch", "shuffle", "--channels", "4", "--context", "4", "--movies",
               "--n-train", "16", "--n-val", "16", "--batch-size", "8", "--png-every", "0", "--device", "cpu",
               "--movie-error-movies", "0", "--epochs", "3", "-q"]))
"""
    r = _cli_in_a_process(code, tmp_path)
    assert r.returncode == 128 + signal.SIGTERM, r.stderr
    assert "dsir: terminated; resume with: dsir train -o m.pt" in r.stderr and "--resume" in r.stderr
    assert (tmp_path / "m.last.pt").is_file() and not [f for f in os.listdir(tmp_path) if f.endswith(".part")]


def test_per_frame_images_too_large_for_memory_are_refused_before_the_run(tmp_path, capsys, tiny_checkpoint,
                                                                         monkeypatch):
    """The per-frame images are kept in memory (1 MB a 64x64 px frame):
    refused, with the way out, where they need more than 80 % of the free
    memory (here made 1 MB); the sum image alone streams and is made."""
    import napari_dsir.render as render

    monkeypatch.setattr(render, "available_memory", lambda: 1_000_000)
    p = tmp_path / "movie.tif"
    tifffile.imwrite(p, np.full((20, 16, 16), 300, np.uint16), photometric="minisblack")
    run = ["reconstruct", str(p), "-o", str(tmp_path / "s.tif"), "--model", str(tiny_checkpoint), "-q"]
    _expect_clean_failure(capsys, tmp_path, p, run + ["--frames-output", str(tmp_path / "f.tif")],
                          "the per-frame images of 20 frames (128x128 px each) need about 1 MB of memory and 1 MB "
                          "is free: choose fewer frames (--frames")
    rc, _, err = _run_cli(run, capsys)
    assert rc == 0, err



@pytest.mark.parametrize("case", ["nan", "inf"])
@pytest.mark.parametrize("command", ["reconstruct", "localize"])
def test_nan_or_infinite_pixels_are_replaced_and_said(tmp_path, capsys, tiny_checkpoint, case, command):
    """A float movie with a NaN or infinite pixel in one frame: the run ends,
    with a warning that counts them (before: refused where the frame was
    reached, the work before it lost)."""
    work = tmp_path / "work"
    work.mkdir()
    src = make_bad_stack(work, case)
    out = work / ("out.tif" if command == "reconstruct" else "out.csv")
    rc, _, err = _run_cli([command, str(src), "-o", str(out), "--model", str(tiny_checkpoint), "-q"], capsys)
    assert rc == 0 and out.is_file(), err
    assert "dsir: warning: " in err and "1 NaN or infinite pixel in 1 frame (the first: frame 1, 0-based)" in err


def test_a_hangup_ignored_as_nohup_ignores_it_stays_ignored(tmp_path, tiny_checkpoint):
    """Under nohup (SIGHUP ignored) a closed terminal does not stop the run."""
    p = tmp_path / "movie.tif"
    tifffile.imwrite(p, np.full((2, 16, 16), 300, np.uint16), photometric="minisblack")
    code = f"""
import os, signal, sys
import napari_dsir.io.files as files
from napari_dsir.cli import main
signal.signal(signal.SIGHUP, signal.SIG_IGN)
real = files.os.replace
def hangup_before_the_rename(a, b):
    os.kill(os.getpid(), signal.SIGHUP)
    real(a, b)
files.os.replace = hangup_before_the_rename
sys.exit(main(["localize", "movie.tif", "-o", "locs.csv", "--model", {str(tiny_checkpoint)!r}, "-q"]))
"""
    r = _cli_in_a_process(code, tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "locs.csv").is_file()


def test_a_run_stopped_between_its_outputs_leaves_every_one_as_it_was(tmp_path, capsys, tiny_checkpoint,
                                                                      monkeypatch):
    """Ctrl-C while the second output (the image beside the table) is
    written: the table written before it is not renamed into place either,
    so the old pair stays a pair, and no temporary file is left."""
    import napari_dsir.io as nio

    p = tmp_path / "movie.tif"
    tifffile.imwrite(p, np.full((4, 16, 16), 300, np.uint16), photometric="minisblack")
    table, image = tmp_path / "l.csv", tmp_path / "sr.tif"
    run = ["localize", str(p), "-o", str(table), "--image", str(image), "--model", str(tiny_checkpoint), "-q"]
    rc, _, err = _run_cli(run, capsys)
    assert rc == 0, err
    before = {f: (digest(f), os.stat(f).st_ino) for f in (table, image)}  # a file renamed in has another inode
    listing = sorted(os.listdir(tmp_path))

    def interrupted(path, *a, **kw):
        with nio.files.atomic_output(path, overwrite=True) as tmp:
            Path(tmp).write_bytes(b"half")
            raise KeyboardInterrupt

    monkeypatch.setattr(nio, "write_tiff", interrupted)
    rc, _, err = _run_cli(run + ["--overwrite", "--threshold", "0.5"], capsys)
    assert rc == 130 and "dsir: interrupted" in err
    assert {f: (digest(f), os.stat(f).st_ino) for f in (table, image)} == before
    assert sorted(os.listdir(tmp_path)) == listing


SETTINGS_CASES = {
    "weight_decay": (["train", "--weight-decay", "-1"], "weight decay must be >= 0, got -1.0"),
    "photons_zero": (["train", "--photons", "0"], "photons must be > 0 per emitter, got 0"),
    "pixel_in_um": (["train", "--sim-pixel-size", "0.16"], "pixels of 0.16 nm: a camera's are tens to hundreds"),
    "fwhm_in_um": (["simulate", "-o", "s.tif", "--fwhm", "0.35:0.45"], "both are in nm"),
    "both_in_um": (["simulate", "-o", "s.tif", "--fwhm", "0.25:0.35", "--sim-pixel-size", "0.16"],
                   "pixels of 0.16 nm: a camera's are tens to hundreds of nm"),
    "empty_model": (["reconstruct", "movie.tif", "-o", "x.tif", "--model", "", "-q", "--pixel-size", "100"],
                    "an empty name (an unset variable?)"),
}


@pytest.mark.parametrize("case", sorted(SETTINGS_CASES))
def test_training_and_simulation_settings_that_cannot_work(case, tmp_path, capsys, monkeypatch):
    """Settings no camera sees or no training can use are refused by name
    before any work: a negative weight decay ended in "unexpected error", 0
    photons trained a Jaccard-0.13 model, and a pixel size or PSF width
    typed in um beside one in nm trained on (or simulated) frames with no
    visible emitter."""
    monkeypatch.chdir(tmp_path)
    argv, needle = SETTINGS_CASES[case]
    if argv[0] == "train":
        argv = argv + ["-o", "m.pt", "--epochs", "1", "--n-train", "8", "--n-val", "8", "-q"]
    if "movie.tif" in argv:  # (an empty --model: a script's unset variable; it ran the default model)
        tifffile.imwrite(tmp_path / "movie.tif", np.full((2, 16, 16), 100, np.uint16))
    before = sorted(os.listdir(tmp_path))
    rc, _, err = _run_cli(argv, capsys)
    assert rc == 2 and err.startswith("dsir: error:") and needle in err and len(err.splitlines()) == 1, err
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("case", ["log_dir_is_a_file", "log_of_another_model"])
def test_training_log_folder_that_would_lose_data(case, tmp_path, capsys, monkeypatch):
    """A --log-dir that is a file ended in "unexpected error: FileExistsError";
    a second model of the same name logged to the same --log-dir silently
    replaced the first one's log. Both refused before any work; the log
    is replaced with --overwrite."""
    monkeypatch.chdir(tmp_path)
    argv = ["train", "-o", "b/m.pt", "--epochs", "1", "--n-train", "8", "--n-val", "8", "--png-every", "0", "-q"]
    (tmp_path / "b").mkdir()
    if case == "log_dir_is_a_file":
        (tmp_path / "logs").write_text("notes")
        needle = "--log-dir logs: a file, not a folder"
    else:
        (tmp_path / "logs").mkdir()
        (tmp_path / "logs" / "m_log.csv").write_text("epoch,train_loss\n1,0.5\n")
        needle = "m_log.csv: a training log is already there (use --overwrite to replace it"
    before = {p: digest(p) for p in tmp_path.rglob("*") if p.is_file()}
    rc, _, err = _run_cli(argv + ["--log-dir", "logs"], capsys)
    assert rc == 2 and err.startswith("dsir: error:") and needle in err and len(err.splitlines()) == 1, err
    assert {p: digest(p) for p in tmp_path.rglob("*") if p.is_file()} == before
    if case == "log_of_another_model":
        assert _run_cli(argv + ["--log-dir", "logs", "--overwrite"], capsys)[0] == 0
        assert (tmp_path / "logs" / "m_log.csv").read_text().startswith("epoch,train_loss,val_loss")
