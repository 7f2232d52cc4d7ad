"""Reading SMLM stacks and localization tables, writing results.

Arrays are (frame, y, x). Positions are in nm with the origin at the top-left
corner of pixel (0, 0); frames are 0-based in Python and 1-based in CSV files
(README, "Coordinates and files"). One module per kind of file: `stacks` (camera movies),
`tables` (localization CSVs; the format follows the extension), `picasso`
(Picasso HDF5 + YAML), `positions` (a table rewritten with new positions,
every other column kept), `files` (atomic writes, TIFF images).
"""

from .files import OUTPUT_SUFFIXES, atomic_output, check_outputs, write_tiff
from .picasso import read_picasso, write_picasso
from .stacks import (
    DEFAULT_PIXEL_SIZE_NM,
    TIFF_SUFFIXES,
    Stack,
    check_pixel_size,
    is_folder_tiff,
    natural_key,
    open_stack,
    stack_of,
)
from .tables import read_localizations, write_localizations

__all__ = [
    "DEFAULT_PIXEL_SIZE_NM", "OUTPUT_SUFFIXES", "check_outputs", "check_pixel_size", "TIFF_SUFFIXES", "Stack",
    "atomic_output", "is_folder_tiff", "natural_key", "open_stack", "read_localizations", "stack_of", "read_picasso",
    "write_localizations", "write_picasso", "write_tiff",
]
