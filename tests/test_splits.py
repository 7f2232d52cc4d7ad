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
    # detections 1.2 px apart on a lattice: as many pairs that close as the
    # pairs at 2-4 px predict, so none is a split and nothing is fitted
    import napari_dsir.splits as S

    g = np.arange(4, 36, 1.2)
    xx, yy = np.meshgrid(g, g)
    found = Localizations(np.zeros(xx.size, np.int64), xx.ravel() * P, yy.ravel() * P, intensity=np.ones(xx.size))
    frames = torch.full((1, 40, 40), 50.0)
    monkeypatch.setattr(S, "_test", lambda *a: pytest.fail("tested"))
    out, merged = _split(frames, found)
    assert merged == 0 and out is found
