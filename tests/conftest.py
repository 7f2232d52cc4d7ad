from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared(*parts) -> Path:
    """Path inside ../shared/data; skips the test when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not available: {p}")
    return p


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """A small untrained napari-dsir checkpoint."""
    from napari_dsir.model import DSIRModel, DSIRNet, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, DSIRModel(DSIRNet((4, 4, 4), (4, 4, 4), head_norm=False)))
    return path
