"""Camera files: Picasso's camera configuration (read against Micro-Manager's camera
properties) and localizations YAML, and ThunderSTORM's protocol."""

import json

import pytest
import yaml

from napari_dsir.camera import Camera, micro_manager_entries
from napari_dsir.camera_files import picasso_camera
from napari_dsir.errors import DSIRError

#: Picasso's documented layout (its "Camera config"): an sCMOS with one
#: sensitivity, an EMCCD whose sensitivity depends on two properties and
#: whose EM gain is a property behind a switch
CONFIG = yaml.safe_load("""
Cameras:
  HamamatsuHam_DCAM:
    Pixelsize: 108
    Baseline: 100
    Sensitivity: 0.46
    Quantum Efficiency: 0.72
  Andor:
    Baseline: 200
    Gain Property Name: Gain
    EM Switch Property:
      Name: Output_Amplifier
      True: Electron Multiplying
      False: Conventional
    Sensitivity Categories:
      - Output_Amplifier
      - Pre-Amp-Gain
    Sensitivity:
      Electron Multiplying:
        Gain 1: 15.9
        Gain 2: 9.34
      Conventional:
        Gain 1: 3.8
    Quantum Efficiency:
      525: 0.95
""")

ANDOR_EM = {"Camera": "Andor", "Andor-Gain": "300", "Andor-Output_Amplifier": "Electron Multiplying",
            "Andor-Pre-Amp-Gain": "Gain 2"}


def test_the_movie_names_the_camera_and_its_properties_pick_the_settings():
    """The entry is the one Micro-Manager's "Camera" names; the sensitivity
    follows the categories' values, the EM gain the gain property while the
    EM switch is on (1 when off); a QE per wavelength is not read."""
    assert picasso_camera(CONFIG, {"Camera": "HamamatsuHam_DCAM"}) == Camera(100, 0.46, 1, 0.72)
    assert picasso_camera(CONFIG, ANDOR_EM) == Camera(200, 9.34, 300, 1)
    conventional = {**ANDOR_EM, "Andor-Output_Amplifier": "Conventional", "Andor-Pre-Amp-Gain": "Gain 1"}
    assert picasso_camera(CONFIG, conventional) == Camera(200, 3.8, 1, 1)


def test_one_camera_is_used_whatever_the_movie_names():
    one = {"Cameras": {"Camera1": {"Baseline": 100, "Sensitivity": 0.5, "Quantum Efficiency": 1.0}}}
    assert picasso_camera(one, None) == Camera(100, 0.5, 1, 1)
    assert picasso_camera(one, {"Camera": "Other"}) == Camera(100, 0.5, 1, 1)


def test_numbers_match_as_numbers_and_text_as_text():
    cfg = {"Cameras": {"C": {"Baseline": 0, "Sensitivity Categories": ["ReadoutRate"],
                             "Sensitivity": {17.0: 4.0, "10 MHz": 2.0}}}}
    assert picasso_camera(cfg, {"Camera": "C", "C-ReadoutRate": "17.000"}).sensitivity == 4.0
    assert picasso_camera(cfg, {"Camera": "C", "C-ReadoutRate": "10 MHz"}).sensitivity == 2.0


@pytest.mark.parametrize("stated, message", [
    ({"Camera": "iXon"}, "lists 2 cameras ('HamamatsuHam_DCAM', 'Andor') and the movie's metadata names camera 'iXon'"),
    ({}, "names no camera"),
    ({**ANDOR_EM, "Andor-Pre-Amp-Gain": None}, "not one of the file's choices ('Gain 1', 'Gain 2')"),
    ({k: v for k, v in ANDOR_EM.items() if k != "Andor-Pre-Amp-Gain"},
     "depends on Andor-Pre-Amp-Gain, which the movie's metadata does not state"),
    ({k: v for k, v in ANDOR_EM.items() if k != "Andor-Gain"},
     "does not state Andor-Gain, the EM gain of camera 'Andor'"),
    ({k: v for k, v in ANDOR_EM.items() if k != "Andor-Output_Amplifier"}, "does not state Andor-Output_Amplifier"),
    ({**ANDOR_EM, "Andor-Gain": "high"}, "Andor-Gain: expected a number, got 'high'"),
])
def test_what_cannot_be_told_is_an_error_that_says_which(stated, message):
    with pytest.raises(DSIRError) as e:
        picasso_camera(CONFIG, stated)
    assert message in str(e.value)


def test_settings_given_need_not_be_found():
    """What the movie does not state can be given (the command line's single
    options over the file); the rest still comes from the file."""
    no_gain = {k: v for k, v in ANDOR_EM.items() if k != "Andor-Gain"}
    assert picasso_camera(CONFIG, no_gain, given=("em_gain",)) == Camera(200, 9.34, 1, 1)
    with pytest.raises(DSIRError, match="EM gain"):
        picasso_camera(CONFIG, no_gain, given=("sensitivity",))


@pytest.mark.parametrize("config, message", [
    ({"Cameras": {}}, "list no camera"),
    ({"Cameras": {"C": None}}, "camera 'C' has no settings"),
    ({"Cameras": {"C": {"Sensitivity": 1}}}, "camera 'C' has no Baseline"),
    ({"Cameras": {"C": {"Baseline": 100}}}, "camera 'C' has no Sensitivity"),
    ({"Cameras": {"C": {"Baseline": 100, "Sensitivity": {"a": 1}}}}, "that its Sensitivity Categories do not settle"),
    ({"Cameras": {"C": {"Baseline": 100, "Sensitivity": 1, "Quantum Efficiency": 1.5}}}, "quantum efficiency"),
])
def test_bad_configurations_are_refused(config, message):
    with pytest.raises(DSIRError) as e:
        picasso_camera(config, {"Camera": "C"})
    assert message in str(e.value)


def test_a_camera_file_of_either_kind(tmp_path):
    """`Camera.from_yaml` reads Picasso's configuration against the movie's
    metadata, and names the file in its errors."""
    p = tmp_path / "config.yaml"
    p.write_text(yaml.safe_dump(CONFIG))
    assert Camera.from_yaml(p, ANDOR_EM) == Camera(200, 9.34, 300, 1)
    with pytest.raises(DSIRError, match=r"camera file .*config.yaml: it lists 2 cameras"):
        Camera.from_yaml(p)


def test_micro_manager_states_a_hamamatsu_conversion_factor():
    """The DCAM conversion factor of the device Micro-Manager's "Camera"
    names is a stated camera; another device's, or a bare property, is not."""
    meta = {"Camera": "HamamatsuHam_DCAM", "HamamatsuHam_DCAM-CONVERSION FACTOR COEFF": "0.4700",
            "HamamatsuHam_DCAM-CONVERSION FACTOR OFFSET": "100.0000", "HamamatsuHam_DCAM-Binning": "1x1"}
    assert micro_manager_entries(meta) == {"sensitivity": "0.4700", "baseline": "100.0000"}
    assert Camera.from_metadata(meta) == Camera(100, 0.47, 1, 1)
    assert Camera.from_metadata({**meta, "Camera": "Other"}) is None
    assert micro_manager_entries({"CONVERSION FACTOR COEFF": 2.0}) == {}


@pytest.mark.parametrize("settings, camera", [
    # ThunderSTORM dev-2016's names (EM gain under "gain", off), and its earlier "gainEM" (on)
    ({"readoutNoise": 0.0, "offset": 414.0, "quantumEfficiency": 1.0, "isEmGain": False, "photons2ADU": 3.6,
      "pixelSize": 80.0, "gain": 100.0}, Camera(414, 3.6, 1, 1)),
    ({"offset": 16.0, "isEmGain": True, "photons2ADU": 5.1, "gainEM": 200.0, "pixelSize": 100.0},
     Camera(16, 5.1, 200, 1)),
    ({"offset": 100, "isEmGain": False, "photons2ADU": 0.47, "quantumEfficiency": 0.7, "readoutNoise": 1.6},
     Camera(100, 0.47, 1, 0.7, read_noise=1.6)),
])
def test_a_thunderstorm_protocol_is_a_camera_file(tmp_path, settings, camera):
    p = tmp_path / "run-protocol.txt"
    p.write_text(json.dumps({"version": "ThunderSTORM (dev-2016-09-10-b1)", "imageInfo": {"title": "a.tif"},
                             "cameraSettings": settings,
                             "analysisDetector": {"name": "Local maximum", "threshold": "1.5*std(Wave.F1)"}},
                            indent=2))
    assert Camera.from_yaml(p) == camera


def test_a_thunderstorm_protocol_without_the_camera_is_refused(tmp_path):
    p = tmp_path / "run-protocol.txt"
    p.write_text(json.dumps({"cameraSettings": {"isEmGain": False, "photons2ADU": 3.6}}))
    with pytest.raises(DSIRError, match="cameraSettings have no offset"):
        Camera.from_yaml(p)
    p.write_text(json.dumps({"cameraSettings": {"offset": 100, "photons2ADU": -1}}))
    with pytest.raises(DSIRError, match="sensitivity must be > 0"):
        Camera.from_yaml(p)


def test_a_picasso_localizations_yaml_is_a_camera_file(tmp_path):
    """The YAML beside a Picasso HDF5 (its steps): the last step stating
    Baseline and Sensitivity, as Picasso's localize writes its camera."""
    p = tmp_path / "movie_locs.yaml"
    p.write_text(yaml.safe_dump_all([
        {"Frames": 100, "Height": 64, "Width": 64, "Camera": "HamamatsuHam_DCAM"},
        {"Generated by": "Picasso v0.11.3 Localize", "Box Size": 7, "Min. Net Gradient": 5000,
         "Baseline": 100, "Sensitivity": 0.47, "Gain": 1, "Qe": 0.82, "Pixelsize": 108},
        {"Generated by": "Picasso v0.11.3 Render: undrift"}]))
    assert Camera.from_yaml(p) == Camera(100, 0.47, 1, 0.82)
    p.write_text(yaml.safe_dump_all([{"Frames": 100}, {"Generated by": "Picasso Render"}]))
    with pytest.raises(DSIRError, match="state no Baseline and Sensitivity"):
        Camera.from_yaml(p)
