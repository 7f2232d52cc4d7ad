"""Qt widgets of the napari plugin (imported only by napari)."""
