"""The status line DSIR Reconstruct shows when a run is done: what it did
to the movie and what it found, from the run's `napari_dsir.reconstruct.Result`
(Qt-free text)."""

from __future__ import annotations


def done_status(result) -> str:
    """Frames, device, batch and pixel size; the camera defects repaired and
    the movie's quirks followed; the localizations and the fits' summary
    (`napari_dsir.fit.fit_summary`; its camera check and failed fits come as
    the run's warnings)."""
    from ..fit import fit_summary

    info = result.info
    loc = info.get("localize")
    n_locs = None if result.localizations is None else len(result.localizations)  # (none: the run's warning)
    report = info.get("fit_report")
    return (
        f"done: frames {result.start}-{result.stop - 1} on {info.get('device', '?')}, "
        f"batch {info.get('batch_size')}, {info['camera_pixel_size']:g} nm pixels"
        + (f", network binning {info['binning']}x{info['binning']}" if info.get("binning", 1) > 1 else "")
        + _saturation_status(info.get("saturated"))
        + (f", hot pixels repaired: {len(info['hot_pixels'])}" if info.get("hot_pixels") else "")
        + (f", dead pixels repaired: {info['dead_pixels']}" if info.get("dead_pixels") else "")
        + (f", column/row offsets subtracted: {info['stripes']['columns']}/{info['stripes']['rows']}"
           if info.get("stripes", {}).get("max_adu") else "")
        + (f", detections around bright objects left out: {info['halos'][1]}" if info.get("halos", (0, 0))[1]
           else "")
        + (f", uneven background followed ({info['background_ratio']:.1f}x)" if info.get("background_shaped")
           else "")
        + (f", {n_locs} localizations (threshold {loc['threshold']:.5g})" if n_locs is not None else "")
        + (f"\n{fit_summary(report)}" if report else ""))


def _saturation_status(saturated: dict | None) -> str:
    """The status line's part for `napari_dsir.camera.saturation`'s finding."""
    if not saturated:
        return ""
    if saturated["share"] == 1.0:
        return f", no signal: every pixel at {saturated['adu']:g} ADU"
    return f", saturated: {saturated['share']:.1%} of the pixels at {saturated['adu']:g} ADU"
