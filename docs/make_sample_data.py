"""Make the package's sample movie: blinking filaments with their ground truth.

    python docs/make_sample_data.py

writes src/napari_dsir/data/sample_stack.tif (camera frames, uint16, 100 nm
pixels in the ImageJ calibration) and sample_positions.csv (the ON emitters
of every frame: ThunderSTORM CSV, 1-based frames, nm, photons). The napari
sample (File > Open Sample > napari-dsir) and `dsir demo` use them.
"""

from pathlib import Path

import numpy as np

from napari_dsir.io import write_localizations, write_tiff
from napari_dsir.simulate import SimulationConfig
from napari_dsir.structures import StructureConfig, simulate_structure

N_FRAMES = 120
CAMERA = SimulationConfig(frame_size=(64, 64), pixel_size=100.0, fwhm=(220.0, 300.0), background=20.0,
                          base_level=100.0, gain=1.0)
STRUCTURE = StructureConfig(structure="filaments", n_structures=8, filament_persistence_nm=3000.0,
                            labels_per_nm=0.2, density=3.0, mean_on_frames=1.5, photons=(500.0, 3000.0))
SEED = 2026


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "src" / "napari_dsir" / "data"
    frames, truth, _ = simulate_structure(N_FRAMES, STRUCTURE, CAMERA, seed=SEED)
    write_tiff(out / "sample_stack.tif", np.clip(frames, 0, 65535), CAMERA.pixel_size, overwrite=True,
               dtype="uint16")
    write_localizations(out / "sample_positions.csv", truth, overwrite=True, intensity_unit="photon")
    per_frame = len(truth) / N_FRAMES
    print(f"{N_FRAMES} frames, {len(truth)} emitters ({per_frame:.0f} per frame, "
          f"{per_frame / (6.4 * 6.4):.1f} per um^2)")


if __name__ == "__main__":
    main()
