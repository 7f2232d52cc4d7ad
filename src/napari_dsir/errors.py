"""The project's error types: clean, user-facing messages.

Front ends catch `DSIRError` (the CLI prints it on one line and exits with
status 2; the napari widgets show it as a notification). Code that must react
to one kind of failure catches its subclass, never a message text.
"""


class DSIRError(ValueError):
    """Bad input (file, option, model) with a message fit for a user."""


class PixelSizeRequired(DSIRError):
    """A table gives positions in pixels and no pixel size was given to convert them."""


class FRCError(DSIRError):
    """An FRC that its halves or its curve did not give
    (`napari_dsir.resolution.frc`; too few localizations in all is a plain
    `DSIRError`). ``reason``: `resolution.UNEVEN_HALVES`,
    `resolution.FINER_THAN_2_PX` or None (another cause); ``advice``: what
    to change on the command line ("" for none), the end of the message
    after ``text``."""

    def __init__(self, text: str, reason: str | None = None, advice: str = ""):
        super().__init__(text + (f"; {advice}" if advice else ""))
        self.text, self.reason, self.advice = text, reason, advice


class StatedCameraError(DSIRError):
    """Impossible camera settings in a file's metadata (a run says whose,
    and that settings given override them)."""


class OutOfMemory(DSIRError):
    """Out of memory even at the smallest batch."""


class DSIRWarning(UserWarning):
    """What a run warns of (an assumed camera or pixel size, failed fits,
    ...), through Python's warnings where the Python API is given no
    progress callback (`napari_dsir.run.run`)."""


class Cancelled(Exception):
    """The user cancelled a run (not an error: nothing to report)."""
