"""The project's own error type: a clean, user-facing message."""


class DSIRError(ValueError):
    """Bad input (file, option, model) with a message fit for a user.

    The CLI prints it on one line and exits with status 2; the napari
    widgets show it as a notification.
    """
