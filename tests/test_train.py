import csv

import numpy as np
import pytest
import torch

from napari_dsir.errors import DSIRError
from napari_dsir.localize import gauss_kernel
from napari_dsir.locs import Localizations
from napari_dsir.model import load_checkpoint
from napari_dsir.simulate import SimulationConfig
from napari_dsir.train import TrainConfig, iter_train, render_labels, train


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


def test_gauss_kernel():
    k = gauss_kernel(5, 3.0)
    assert k.shape == (1, 1, 5, 5) and k[0, 0, 2, 2] == 1
    assert k[0, 0, 2, 0] == pytest.approx(2 ** (-(2**2) * 4 / 9), rel=1e-5)  # exp(-4 ln2 d^2 / fwhm^2)


def test_training_writes_best_checkpoint_log_png_and_calibrates(tmp_path):
    path = tmp_path / "m.pt"
    logs = list(_run(iter_train(_cfg(), path, metadata={"command": "test"})))
    assert [l.epoch for l in logs] == [1, 2, 3]
    assert logs[-1].train_loss < logs[0].train_loss
    rows = list(csv.DictReader(open(tmp_path / "m_log.csv")))
    assert len(rows) == 3 and float(rows[-1]["best_val_loss"]) == pytest.approx(min(l.val_loss for l in logs), rel=1e-4)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["m_epoch0002.png", "m_epoch0003.png"]
    m = load_checkpoint(path)
    assert m.metadata["command"] == "test"
    assert m.metadata["training"]["epochs"] == 3 and "simulation" in m.metadata
    assert m.metadata["localize"]["threshold"] > 0
    assert m.output_blur == (5, 3.0)
    raw = torch.load(path, weights_only=True)
    assert raw["metadata"]["training"]["lr"] == 3e-3


def _run(gen):
    while True:
        try:
            yield next(gen)
        except StopIteration:
            return


def test_resume_after_interruption(tmp_path):
    path = tmp_path / "m.pt"
    gen = iter_train(_cfg(epochs=3, png_every=0, calibrate=False), path)
    next(gen)
    with pytest.raises(KeyboardInterrupt):
        gen.throw(KeyboardInterrupt)  # Ctrl-C: the state is saved first
    state = torch.load(tmp_path / "m.last.pt", weights_only=True)
    assert state["epoch"] == 1
    logs = list(_run(iter_train(_cfg(epochs=3, png_every=0, calibrate=False), path, resume=True)))
    assert [l.epoch for l in logs] == [2, 3]
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
    _, y1 = d.batch(np.arange(4), "cpu")
    _, y100 = d.batch(np.arange(4), "cpu", 100.0)
    assert y1.sum() == len(d.locs) and torch.equal(y100, 100 * y1)
