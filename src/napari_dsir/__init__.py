"""napari-dsir: deep-learning super-resolution image reconstruction for SMLM.

The core (``io``, ``simulate``, ``model``, ``train``, ``reconstruct``,
``localize``, ``evaluate``) imports neither Qt nor napari.
"""

__version__ = "0.1.0"

from .errors import DSIRError

__all__ = ["DSIRError", "__version__"]
