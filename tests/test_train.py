import csv

import numpy as np
import pytest
import torch

from napari_dsir.errors import DSIRError
from napari_dsir.localize import gauss_kernel
from napari_dsir.locs import Localizations
from napari_dsir.model import load_checkpoint
from napari_dsir.simulate import MovieConfig, SimulationConfig
from napari_dsir.train import (
    EpochLog,
    TrainConfig,
    TrainStatus,
    frame_starts,
    iter_train,
    render_labels,
    show_epoch,
    train,
)


def _cfg(**kw):
    base = dict(epochs=3, n_train=48, n_val=16, batch_size=16, lr=3e-3, encoder=(4, 4, 4), decoder=(4, 4, 4),
                head_norm=False, head_relu=False, png_every=2, seed=3,
                simulation=SimulationConfig(frame_size=(16, 16), density=1.0, photons=(1000, 3000)))
    base.update(kw)
    return TrainConfig(**base)


def test_defaults_are_the_original_dsir_settings():
    c = TrainConfig()
    assert (c.epochs, c.batch_size, c.lr, c.weight_decay, c.seed) == (100, 32, 1e-4, 1e-5, 99)
    assert (c.kernel_width, c.kernel_fwhm, c.n_train, c.n_val) == (5, 3.0, 3500, 1500)
    assert c.simulation.frame_size == (26, 26)


def test_labels_bin_positions_on_the_upsampled_grid():
    locs = Localizations([0, 0, 1], [0.0, 12.49, 30.0], [0.0, 12.6, 99.9])
    lab = render_labels(locs, np.array([0, 1]), (16, 16), 12.5)
    assert lab.shape == (2, 1, 16, 16) and lab.sum() == 3
    assert lab[0, 0, 0, 0] == 1 and lab[0, 0, 1, 0] == 1 and lab[1, 0, 7, 2] == 1
    # with the frames' start rows (the training batches'): the same for any batch of frames, empty ones too
    rng = np.random.default_rng(3)
    many = Localizations(np.sort(rng.integers(0, 40, 300)), rng.uniform(0, 200, 300), rng.uniform(0, 200, 300))
    starts = frame_starts(many, 50)
    for idx in (np.array([0, 1]), np.array([45, 3, 17]), np.arange(50), np.array([49])):
        torch.testing.assert_close(render_labels(many, idx, (16, 16), 12.5, starts),
                                   render_labels(many, idx, (16, 16), 12.5))
    twice = render_labels(many, np.array([3, 3]), (16, 16), 12.5, starts)  # a frame twice: labelled twice
    assert twice[0].sum() == (many.frame == 3).sum() > 0 and torch.equal(twice[0], twice[1])
    with pytest.raises(DSIRError, match="sorted"):
        frame_starts(Localizations([1, 0], [0.0, 0.0], [0.0, 0.0]), 2)


def test_gauss_kernel():
    k = gauss_kernel(5, 3.0)
    assert k.shape == (1, 1, 5, 5) and k[0, 0, 2, 2] == 1
    assert k[0, 0, 2, 0] == pytest.approx(2 ** (-(2**2) * 4 / 9), rel=1e-5)  # exp(-4 ln2 d^2 / fwhm^2)


def test_training_writes_best_checkpoint_log_png_and_calibrates(tmp_path):
    path = tmp_path / "m.pt"
    records = list(_run(iter_train(_cfg(), path, metadata={"command": "test"})))
    logs = _epochs(records)
    assert [l.epoch for l in logs] == [1, 2, 3]
    assert logs[-1].train_loss < logs[0].train_loss
    rows = list(csv.DictReader(open(tmp_path / "m_log.csv")))
    assert len(rows) == 3 and float(rows[-1]["best_val_loss"]) == pytest.approx(min(l.val_loss for l in logs), rel=1e-4)
    assert [float(r["seconds"]) for r in rows] == pytest.approx([l.seconds for l in logs], abs=0.006)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["m_epoch0002.png", "m_epoch0003.png", "m_loss.png"]
    from PIL import Image

    with Image.open(tmp_path / "m_epoch0002.png") as im:  # 4 validation frames x (input, prediction, truth)
        assert im.format == "PNG" and im.size == (3 * 180, round((4 * 1.8 + 0.5) * 100))
    m = load_checkpoint(path)
    assert m.metadata["command"] == "test"
    assert m.metadata["training"]["epochs"] == 3 and "simulation" in m.metadata
    assert m.metadata["localize"]["threshold"] > 0
    assert m.output_blur == (5, 3.0)
    raw = torch.load(path, weights_only=True)
    assert raw["metadata"]["training"]["lr"] == 3e-3


def test_settings_that_cannot_train_are_refused():
    """A density of 0 (frames with nothing to find: the model came out
    Jaccard 0 and flooded movies with detections) and a negative PNG
    interval are refused before any simulation."""
    for cfg, needle in ((_cfg(simulation=SimulationConfig(frame_size=(16, 16), density=0.0)), "density 0.0"),
                        (_cfg(png_every=-1), "png_every")):
        with pytest.raises(DSIRError, match=needle):
            next(iter_train(cfg, save=False))


def _epochs(records):
    return [r for r in records if isinstance(r, EpochLog)]


def _run(gen):
    while True:
        try:
            yield next(gen)
        except StopIteration:
            return


def test_resume_after_interruption(tmp_path):
    path = tmp_path / "m.pt"
    gen = iter_train(_cfg(epochs=3, png_every=0, calibrate=False), path)
    assert next(gen).stage == "simulating"
    assert next(gen).epoch == 1
    with pytest.raises(KeyboardInterrupt):
        gen.throw(KeyboardInterrupt)  # Ctrl-C: the state is saved first
    state = torch.load(tmp_path / "m.last.pt", weights_only=True)
    assert state["epoch"] == 1
    # resumed with other settings (another network, other data): refused by name, before any epoch
    # (a resume with another --arch ended in an unexpected error, one with other data went on silently)
    for other in (dict(arch="shuffle", channels=8, context=8), dict(n_train=16)):
        with pytest.raises(DSIRError, match=f"other settings \\({next(iter(other))}: "):
            list(_run(iter_train(_cfg(epochs=3, png_every=0, calibrate=False, **other), path,
                                 resume=True)))
    # another simulation: the setting that differs is named, not the whole simulation twice
    from dataclasses import replace

    cfg = _cfg(epochs=3, png_every=0, calibrate=False)
    with pytest.raises(DSIRError, match=r"other settings \(simulation photons: \[1000, 3000\] then, "
                                        r"\[10.0, 20.0\] now\)"):
        list(_run(iter_train(replace(cfg, simulation=replace(cfg.simulation, photons=(10.0, 20.0))), path,
                             resume=True)))
    logs = _epochs(_run(iter_train(_cfg(epochs=3, png_every=0, calibrate=False), path, resume=True,
                                   log_dir=tmp_path / "logs")))
    assert [l.epoch for l in logs] == [2, 3]
    assert (tmp_path / "logs" / "m_log.csv").read_text().startswith("epoch,train_loss")  # a new log: its header
    # fewer epochs than done: refused (it finished silently, its metadata saying 2 epochs of 3 done)
    with pytest.raises(DSIRError, match="the run has done 3 epochs, more than the 2 asked: give --epochs 3 or more"):
        list(_run(iter_train(replace(cfg, epochs=2), path, resume=True)))
    with pytest.raises(DSIRError, match="nothing to resume"):
        next(iter_train(_cfg(), tmp_path / "other.pt", resume=True))


def test_fine_tune_from_checkpoint(tmp_path):
    base = train(_cfg(epochs=1, png_every=0, calibrate=False), tmp_path / "a.pt")
    tuned = train(_cfg(epochs=1, png_every=0, calibrate=False, init=str(tmp_path / "a.pt"), kernel_fwhm=1.0,
                       lr=1e-4), tmp_path / "b.pt")
    assert tuned.net.arch_params() == base.net.arch_params()
    assert load_checkpoint(tmp_path / "b.pt").metadata["training"]["kernel_fwhm"] == 1.0
    # a linear-output model is applied through the loss kernel it was last trained with
    assert base.output_blur == (5, 3.0)
    assert tuple(load_checkpoint(tmp_path / "b.pt").output_blur) == (5, 1.0)


def test_bad_settings():
    with pytest.raises(DSIRError):
        next(iter_train(_cfg(epochs=0), save=False))


def test_label_scale_scales_the_target(tmp_path):
    from napari_dsir.train import _Data

    d = _Data(4, SimulationConfig(frame_size=(8, 8), density=20.0), 1, 8)
    _, y1, _ = d.batch(np.arange(4), "cpu")
    _, y100, _ = d.batch(np.arange(4), "cpu", 100.0)
    assert y1.sum() == len(d.locs) and torch.equal(y100, 100 * y1)


def test_stages_are_announced_in_order(tmp_path):
    """Simulation and the localizer's calibration (a minute at the default
    sizes) each announce themselves before they start: the bar is never
    silent at 0% or 100%."""
    records = list(_run(iter_train(_cfg(epochs=2, png_every=0), tmp_path / "m.pt")))
    kinds = [r.stage if isinstance(r, TrainStatus) else r.epoch for r in records]
    assert kinds == ["simulating", 1, 2, "calibrating", "done"]
    assert records[0].message == "simulating 48 training and 16 validation frames"
    assert records[3].message == "calibrating the localizer on 16 validation frames"
    assert (records[3].epoch, records[3].epochs) == (2, 2)
    assert records[4].message.startswith("trained, validation Jaccard (250 nm) 0.")
    assert records[2].mean_seconds == pytest.approx((records[1].seconds + records[2].seconds) / 2)
    no_cal = list(_run(iter_train(_cfg(epochs=1, png_every=0, calibrate=False), save=False)))
    assert [r.stage for r in no_cal if isinstance(r, TrainStatus)] == ["simulating", "done"]
    assert no_cal[-1].message == "trained"


def _bar():
    import io

    from tqdm import tqdm

    return tqdm(total=10, desc="training", unit="epoch", file=io.StringIO(), mininterval=0)


def test_bar_shows_the_epochs_own_time_not_the_time_since_it_opened():
    """tqdm's rate counts all the time since the bar opened (the data
    simulation before the first epoch): the bar shows the log's seconds per
    epoch and the time left at that pace instead."""
    bar = _bar()
    bar.start_t -= 100.0  # 100 s went into simulating the data before epoch 1
    show_epoch(bar, EpochLog(1, 10, 0.5, 0.6, 0.6, True, 5.3, 5.3))
    text = str(bar)
    assert "1/10" in text and "5.3 s/epoch" in text and "00:48 left" in text  # 9 epochs x 5.3 s
    assert "s/epoch]" not in text and "epoch/s" not in text  # no tqdm rate (it would say 101 s/epoch)
    assert "train 0.5" in text and "val 0.6" in text
    show_epoch(bar, EpochLog(2, 10, 0.4, 0.5, 0.5, True, 7.0, 6.15))
    assert "7.0 s/epoch" in str(bar) and "00:49 left" in str(bar)  # 8 x the mean 6.15 s
    bar.close()


def test_bar_shows_each_stage():
    bar = _bar()
    show_epoch(bar, TrainStatus("simulating", "simulating 3500 training and 1500 validation frames", 0, 10))
    assert str(bar).startswith("simulating 3500 training and 1500 validation frames:") and bar.n == 0
    show_epoch(bar, EpochLog(10, 10, 0.4, 0.5, 0.5, True, 5.0, 5.0))
    assert str(bar).startswith("training: 100%")
    show_epoch(bar, TrainStatus("calibrating", "calibrating the localizer on 1500 validation frames", 10, 10))
    assert str(bar).startswith("calibrating the localizer on 1500 validation frames: 100%")
    show_epoch(bar, TrainStatus("done", "trained, validation Jaccard (250 nm) 0.812", 10, 10))
    assert str(bar).startswith("trained, validation Jaccard (250 nm) 0.812: 100%")
    bar.close()


# --------------------------------------------------------------------------- the fast network on movies


def _movie_cfg(**kw):
    base = dict(arch="shuffle", channels=8, context=8, normalization="movie", epochs=2, n_train=64, n_val=32,
                batch_size=16, lr=3e-3, label_scale=100.0, kernel_width=7, png_every=0, seed=3, error_movies=6,
                movies=MovieConfig(frame_size=(16, 16), frames_per_movie=4, density=(1.0, 4.0),
                                   photons_low=(1500.0, 2000.0)))
    base.update(kw)
    return TrainConfig(**base)


def test_fast_network_trains_on_movies_and_ships_a_calibrated_threshold(tmp_path, monkeypatch):
    import napari_dsir.calibrate

    monkeypatch.setattr(napari_dsir.calibrate, "MIN_CEILING_MOVIES", 2)  # 8 validation movies, 3 with spots
    logs = list(iter_train(_movie_cfg(), tmp_path / "f.pt"))
    epochs = [r for r in logs if isinstance(r, EpochLog)]
    assert len(epochs) == 2 and epochs[-1].train_loss < epochs[0].train_loss
    m = load_checkpoint(tmp_path / "f.pt")
    assert m.arch == "shuffle" and m.normalization == "movie" and m.output_blur is None
    loc = m.metadata["localize"]
    assert loc["threshold"] > 0 and loc["blur_fwhm"] == 0.0 and loc["radius"] in (2, 3)
    report = m.metadata["calibration"]
    assert set(report) >= {"bands", "empty_frame_fp", "mean_jaccard", "constraints_met", "crowded_error"}
    # the network's own error where the refinement keeps its positions, per neighbour class
    assert len(loc["crowded_error_px"]) == 4 and min(loc["crowded_error_px"]) >= 0
    assert report["crowded_error"]["movies"] == 32 // 4 + 6  # the validation movies and 6 more
    assert m.metadata["simulation"]["frames_per_movie"] == 4  # the movie ranges, stored
    assert m.metadata["training"]["movies"]["density"] == [1.0, 4.0]
    # the spot height 99 % of its validation movies stay under, for movies brighter than its training
    ceiling = m.metadata["spot_ceiling"]
    assert 2 <= ceiling["movies"] <= 8 and ceiling["share"] == 0.99 and m.spot_ceiling == ceiling["height"] > 8


def test_movie_data_carry_one_noise_level_per_movie():
    from napari_dsir.model import movie_scale
    from napari_dsir.train import _Data

    d = _Data(16, SimulationConfig(), 2, 8, MovieConfig(frame_size=(16, 16), frames_per_movie=4))
    assert d.frames.shape == (16, 16, 16) and d.shape == (128, 128)
    assert np.allclose(d.scales[:4], d.scales[0]) and d.scales[0] == pytest.approx(
        movie_scale(torch.from_numpy(d.frames[:4])))
    x, y, sc = d.batch(np.arange(8), "cpu", rng=np.random.default_rng(0), jitter=0.1)
    assert sc.shape == (8,) and not torch.allclose(sc, torch.from_numpy(d.scales[:8]))  # jittered


@pytest.mark.parametrize("kw, msg", [
    (dict(arch="unet"), "unknown architecture"),
    (dict(normalization="zscore"), "needs normalization 'movie'"),
    (dict(movies=None), "needs training movies"),
])
def test_bad_movie_settings(kw, msg):
    with pytest.raises(DSIRError, match=msg):
        next(iter_train(_movie_cfg(**kw), save=False))


def test_fine_tuning_keeps_the_models_normalisation(tmp_path):
    train(_movie_cfg(epochs=1, calibrate=False), tmp_path / "f.pt")
    with pytest.raises(DSIRError, match="normalises its input by 'movie'"):
        train(_cfg(epochs=1, calibrate=False, init=str(tmp_path / "f.pt")), tmp_path / "g.pt")


def test_train_epoch_takes_a_batch_loss():
    """A caller's loss (distillation, `docs/finetune_gpu.py`) replaces dsir train's, batch by batch."""
    from napari_dsir.model import DSIRModel
    from napari_dsir.networks import ShuffleNet
    from napari_dsir.train import _Data, train_epoch

    cfg = _cfg(batch_size=4)
    d = _Data(8, SimulationConfig(frame_size=(16, 16), density=2.0), 5, 8)
    torch.manual_seed(0)
    model = DSIRModel(ShuffleNet(4, 4, 8), "shuffle", 8, "zscore", 100.0)
    opt = torch.optim.Adam(model.net.parameters(), lr=1e-3)
    kernel = gauss_kernel(7, 3.0)
    seen = []

    def loss_fn(x, y, sc):
        seen.append(len(x))
        return (model.raw(x, scale=sc) - 1.0).pow(2).mean()

    rng = np.random.default_rng(0)
    own = train_epoch(model, d, cfg, opt, kernel, 3, "cpu", rng, lambda step: 1e-3, 0, loss_fn)
    assert seen == [4, 4]
    plain = train_epoch(model, d, cfg, opt, kernel, 3, "cpu", rng, lambda step: 1e-3, 0)
    assert len(seen) == 2 and len(own) == len(plain) == 2
    # outputs near 0 are far from the caller's target of 1, nearer dsir train's sparse label
    assert float(own[0]) > 0.5 and float(plain[0]) < float(own[0])


def test_init_takes_the_checkpoints_network_and_refuses_another_shape(tiny_checkpoint, tmp_path, capsys):
    """`dsir train --init` fine-tunes the checkpoint's own network: another
    --arch or network shape is refused (they were ignored, and the new
    checkpoint recorded them), none given takes the checkpoint's; the new
    checkpoint states the pixel size it was fine-tuned at."""
    from napari_dsir.cli import main
    from napari_dsir.model import load_checkpoint

    base = ["train", "-o", str(tmp_path / "ft.pt"), "--init", str(tiny_checkpoint), "--epochs", "1", "--n-train",
            "16", "--n-val", "16", "--batch-size", "8", "--png-every", "0", "--device", "cpu", "-q",
            "--sim-pixel-size", "120"]
    assert main(base + ["--arch", "shuffle"]) == 2
    assert "is a 'dsir' network: --arch shuffle cannot fine-tune it" in capsys.readouterr().err
    assert main(base + ["--encoder", "32", "16", "16"]) == 2
    assert "--encoder shapes a new network" in capsys.readouterr().err
    assert main(base + ["--encoder", "16", "8", "8"]) == 2  # the default typed out is given too (it slipped by)
    assert main(base + ["--no-head-relu"]) == 2  # (ignored, and recorded as trained)
    assert "--no-head-relu shapes a new network" in capsys.readouterr().err
    from .conftest import SHARED_DATA

    original = SHARED_DATA / "dsir_original" / "autoencoder_model.pt"
    if original.exists():  # the original weights without legacy: (an unexpected AttributeError)
        assert main([*base[:3], "--init", str(original), *base[5:]]) == 2
        assert "an original DSIR file: fine-tune it with --init legacy:" in capsys.readouterr().err
    assert not (tmp_path / "ft.pt").exists()
    capsys.readouterr()
    assert main(base) == 0
    out = capsys.readouterr().out  # where everything went, and the threshold
    assert "threshold " in out and "ft_log.csv" in out and "ft.last.pt" in out
    model = load_checkpoint(tmp_path / "ft.pt")
    assert model.arch == "dsir" and model.pixel_size == 120.0
    assert list(model.metadata["training"]["encoder"]) == [4, 4, 4]
