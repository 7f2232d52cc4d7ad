"""Split spots (splits.split_spots): one emitter detected twice is merged; true pairs are kept."""

import numpy as np
import pytest
import torch

from napari_dsir import fit
from napari_dsir import reconstruct as R
from napari_dsir.camera import Camera
from napari_dsir.locs import Localizations
from napari_dsir.simulate import FWHM_TO_SIGMA, render_emitters
from napari_dsir.splits import split_spots

P = 100.0  # nm per camera pixel
SIGMA = 300.0 * FWHM_TO_SIGMA  # nm


def _scene(seed, pairs_px=None, n_frames=12, size=48, photons=8000.0, bg=10.0):
    """Frames (photons, Poisson) with three bright emitters per frame on a
    grid 14 px apart, or pairs ``pairs_px`` apart in x at those places.
    Returns frames, the truth and detections: each emitter split in two
    0.4 px either side of it (no pairs), or the pair's own positions."""
    rng = np.random.default_rng(seed)
    frames, truth, found = [], [], []
    for f in range(n_frames):
        cx = (np.arange(3) * 14 + 10 + rng.uniform(0, 1, 3)) * P
        cy = (np.full(3, 24.0) + rng.uniform(-6, 6, 3)) * P
        if pairs_px is None:
            tx, ty = cx, cy
            dx, dy = np.r_[cx - 40.0, cx + 40.0], np.r_[cy, cy]
            inten = np.r_[np.ones(3), np.full(3, 0.7)]
        else:
            tx, ty = np.r_[cx, cx + pairs_px * P], np.r_[cy, cy]
            dx, dy, inten = tx, ty, np.ones(6)
        light = render_emitters(tx, ty, np.full(len(tx), photons), np.full(len(tx), SIGMA), (size, size), P)
        frames.append(rng.poisson(light + bg).astype(np.float32))
        truth.append(Localizations(np.full(len(tx), f), tx, ty))
        found.append(Localizations(np.full(len(dx), f), dx, dy, intensity=inten))
    return (torch.from_numpy(np.stack(frames)), Localizations.concatenate(truth),
            Localizations.concatenate(found))


def _split(frames, found):
    return split_spots(frames, found, P, Camera(baseline=0.0), window=7, sigma_px=SIGMA / P)


def test_one_emitter_detected_twice_is_one_detection_at_its_fit():
    frames, truth, found = _scene(1)
    out, merged = _split(frames, found)
    assert merged == len(truth) and len(out) == len(truth)
    # the stronger of each pair kept, moved to the single emitter's fit
    err = np.hypot(out.x - truth.x, out.y - truth.y)
    assert np.max(err) < 15.0
    assert np.allclose(out.intensity, 1.7)


def test_true_pairs_that_the_frame_resolves_are_kept():
    # a movie whose splits make an excess of close pairs (so the test runs),
    # and frames with true pairs 1.3 px apart among them
    f1, _, d1 = _scene(2)
    f2, _, d2 = _scene(3, pairs_px=1.3)
    frames = torch.cat([f1, f2])
    d2 = Localizations(d2.frame + len(f1), d2.x, d2.y, intensity=d2.intensity)
    out, merged = _split(frames, Localizations.concatenate([d1, d2]))
    assert merged >= 0.9 * len(d1) // 2
    later = out.frame >= len(f1)
    assert later.sum() == len(d2)


def test_no_close_pairs_nothing_to_test():
    frames, _, found = _scene(4, pairs_px=3.0)
    out, merged = _split(frames, found)
    assert merged == 0 and out is found


@pytest.mark.parametrize("n", [0, 1])
def test_too_few_detections(n):
    frames, _, found = _scene(5, n_frames=1)
    out, merged = _split(frames, found.select(np.arange(len(found)) < n))
    assert merged == 0 and len(out) == n


def test_run_merges_before_the_fits_and_reports_it(monkeypatch):
    frames, truth, found = _scene(6)
    pending = R._PendingFits(0)
    pending.add(frames, found)
    counts = {}
    out = pending.fit(P, Camera(baseline=0.0), 7, counts, sigma_init_nm=SIGMA)
    assert counts[fit.SPLIT] == len(truth) and len(out) == len(truth)
    report = fit.fit_report(counts, out)
    assert report["split"] == len(truth) and not report["failed"]
    assert report["total"] == len(truth)
    assert f"{len(truth)} split spots merged" in fit.fit_summary(report)
    monkeypatch.setattr(R, "SPLIT_SPOTS", False)
    pending = R._PendingFits(0)
    pending.add(frames, found)
    counts = {}
    assert len(pending.fit(P, Camera(baseline=0.0), 7, counts, sigma_init_nm=SIGMA)) == len(found)
    assert fit.SPLIT not in counts


def test_crowded_frames_are_not_tested(monkeypatch):
    # pairs of detections 1.2 px apart on a grid 3.5 px apart: fewer pairs
    # that close than the pairs at one to two FWHM predict, so none is
    # taken for a split and nothing is fitted
    import napari_dsir.splits as S

    g = np.arange(4, 36, 3.5)
    xx, yy = (a.ravel() for a in np.meshgrid(g, g))
    x, y = np.r_[xx - 0.6, xx + 0.6], np.r_[yy, yy]
    found = Localizations(np.zeros(x.size, np.int64), x * P, y * P, intensity=np.ones(x.size))
    frames = torch.full((1, 40, 40), 50.0)
    monkeypatch.setattr(S, "_test", lambda *a: pytest.fail("tested"))
    out, merged = _split(frames, found)
    assert merged == 0 and out is found


def test_chi_square_densities_match_scipy_stats():
    from scipy.stats import chi2, ncx2

    from napari_dsir.splits import _chi2_logpdf, _ncx2_logpdf

    x = np.array([1e-3, 0.5, 3.0, 11.0, 40.0, 200.0, 2000.0])
    for k in (3, 6, 9):
        assert np.allclose(_chi2_logpdf(x, k), chi2.logpdf(x, k))
        for nc in (1e-6, 0.5, 5.0, 30.0, 300.0, 5000.0):
            assert np.allclose(_ncx2_logpdf(x, k, nc), ncx2.logpdf(x, k, nc), rtol=1e-6, atol=1e-6)
