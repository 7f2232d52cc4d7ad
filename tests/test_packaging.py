"""What a new user reads and installs agrees with what the package does."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_napari_extra_brings_a_qt_binding():
    """Regression: `pip install ".[napari]"` gave a napari that could not
    start ("No Qt bindings could be found")."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    napari = [r for r in extras["napari"] if r.startswith("napari")]
    assert napari and re.search(r"\[[^\]]*(pyqt|pyside|all)", napari[0].lower()), napari


def test_readme_names_the_menus_napari_shows():
    """Regression: the README said "Plugins > DSIR Reconstruct"; napari shows
    the manifest's display name as a submenu."""
    manifest = yaml.safe_load((ROOT / "src" / "napari_dsir" / "napari.yaml").read_text())
    readme = (ROOT / "README.md").read_text()
    for widget in manifest["contributions"]["widgets"]:
        assert f"Plugins > {manifest['display_name']} > {widget['display_name']}" in readme, widget
    assert "Plugins > DSIR" not in readme


def test_readme_test_command_is_what_ci_runs():
    command = next(ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
                   if ln.startswith("python3 -m venv"))
    assert command in (ROOT / "README.md").read_text()
    assert "ruff check" in command


def test_original_weights_load_with_or_without_the_prefix():
    """The README says the legacy: prefix is optional: an original DSIR file is recognised."""
    from napari_dsir.model import load_model

    from .conftest import SHARED_DATA

    path = SHARED_DATA / "dsir_original" / "autoencoder_model.pt"
    if not path.is_file():
        pytest.skip("needs ../shared/data")
    assert load_model(str(path)).arch == load_model(f"legacy:{path}").arch == "dsir-legacy"
