"""The fast camera-resolution network and the per-movie normalisation."""

import numpy as np
import pytest
import torch

from napari_dsir.errors import DSIRError
from napari_dsir.model import (
    DSIRModel,
    ShuffleNet,
    load_checkpoint,
    load_model,
    movie_scale,
    noise_level,
    save_checkpoint,
)


def _model(channels=4, context=4, seed=0):
    torch.manual_seed(seed)
    net = ShuffleNet(channels, context)
    for m in net.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    net.eval()
    return DSIRModel(net, "shuffle", 8, "movie", 100.0)


def test_output_is_the_x8_grid_of_the_camera_frame():
    m = _model()
    x = torch.rand(2, 13, 22) * 50 + 100  # odd sizes are padded and cropped back
    with torch.inference_mode():
        y = m.predict(x, tile=None)
    assert y.shape == (2, 13 * 8, 22 * 8) and (y >= 0).all()


def test_receptive_field_is_the_declared_one():
    torch.manual_seed(0)
    net = ShuffleNet(4, 4).eval()
    x = torch.randn(1, 1, 48, 48, requires_grad=True)
    net(x)[0, 0, 24 * 8 + 3, 24 * 8 + 5].backward()
    ys, xs = torch.nonzero(x.grad[0, 0] != 0, as_tuple=True)
    assert int(ys.min()) == 24 - ShuffleNet.field and int(ys.max()) == 24 + ShuffleNet.field
    assert int(xs.min()) == 24 - ShuffleNet.field and int(xs.max()) == 24 + ShuffleNet.field


def test_folded_batch_norm_gives_the_same_output():
    m = _model()
    x = torch.randn(3, 1, 20, 24)
    with torch.no_grad():
        torch.testing.assert_close(m._inference_net()(x), m.net(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("tile", [16, 20])
def test_tiles_match_whole_frames(tile):
    m = _model()
    x = torch.rand(2, 45, 51) * 80 + 100
    with torch.inference_mode():
        scale = movie_scale(x)
        whole = m.predict(x, tile=None, scale=scale)
        tiled = m.predict(x, tile=tile, scale=scale)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-4)


def test_checkpoint_round_trip(tmp_path):
    m = _model(channels=6, context=5)
    path = save_checkpoint(tmp_path / "s.pt", m)
    back = load_checkpoint(path)
    assert back.arch == "shuffle" and back.normalization == "movie" and back.camera_resolution
    assert back.net.arch_params() == {"channels": 6, "context": 5, "upsampling": 8}
    x = torch.rand(1, 16, 16) * 30 + 200
    with torch.inference_mode():
        torch.testing.assert_close(back.predict(x, scale=3.0), m.predict(x, scale=3.0))


def test_upsampling_is_fixed_by_the_network():
    with pytest.raises(DSIRError, match="fixed at up-sampling 8"):
        DSIRModel(ShuffleNet(4, 4), "shuffle", upsampling=4, normalization="movie")


def test_shipped_models_by_name():
    fast, dsir = load_model("default"), load_model("dsir")
    assert fast.arch == "shuffle" and fast.normalization == "movie" and fast.source == "default"
    assert dsir.arch == "dsir" and dsir.source == "dsir"
    for m in (fast, dsir):
        assert m.metadata["localize"]["threshold"] > 0
    with pytest.raises(DSIRError, match="fastest: no shipped model of that name and no such file .shipped: default"):
        load_model("fastest")
    for typo, name in (("widee", "wide"), ("defualt", "default")):  # a name mistyped: the closest is offered
        with pytest.raises(DSIRError, match=f"did you mean '{name}'"):
            load_model(typo)
    assert load_model("Wide").source == "wide"  # another case: the shipped model
    with pytest.raises(DSIRError, match="no such model file"):
        load_model("missing.pt")


# --------------------------------------------------------------------------- movie normalisation


def _noise(shape, seed=0, bg=50.0):
    return np.random.default_rng(seed).poisson(bg, shape).astype(np.float32)


def test_noise_level_is_the_pixel_noise():
    x = torch.from_numpy(np.random.default_rng(1).normal(100, 7.0, (4, 64, 64)).astype(np.float32))
    assert noise_level(x).numpy() == pytest.approx(7.0, rel=0.05)


def test_movie_scale_follows_the_camera_gain_and_ignores_its_offset():
    x = torch.from_numpy(_noise((8, 32, 32)))
    s = movie_scale(x)
    assert movie_scale(3.0 * x + 500.0) == pytest.approx(3.0 * s, rel=1e-5)


def test_an_empty_frame_is_normalised_by_the_movie_not_by_itself():
    """The per-frame z-score's failure: a nearly empty frame was scaled up
    until its noise looked like emitters. With the movie's noise level the
    output of a frame does not depend on the other frames of its batch."""
    m = _model()
    rng = np.random.default_rng(3)
    frames = _noise((6, 32, 32), seed=4)
    frames[1:, 10:14, 10:14] += rng.uniform(500, 2000, (5, 4, 4)).astype(np.float32)  # bright spots
    x = torch.from_numpy(frames)
    scale = movie_scale(x)
    with torch.inference_mode():
        alone = m.predict(x[:1], tile=None, scale=scale)
        in_movie = m.predict(x, tile=None, scale=scale)[:1]
    torch.testing.assert_close(alone, in_movie, atol=1e-5, rtol=1e-4)
    assert scale == pytest.approx(movie_scale(x[:1]), rel=0.25)  # the noise, not the spots, sets it


def test_noise_free_frames_fall_back_to_their_spread():
    x = torch.zeros(2, 16, 16)
    x[:, 5, 5] = 1000.0
    assert movie_scale(x) == pytest.approx(10.0)
    with pytest.raises(DSIRError, match="frames"):
        movie_scale(torch.zeros(16, 16))
