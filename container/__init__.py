"""mfrec: an implicit-feedback matrix factorisation recommender as a SageMaker algorithm container.

The root package holds the command line and the SageMaker glue; the model lives in
:mod:`mfrec.train` and the server in :mod:`mfrec.serve`.
"""

from mfrec.train.version import __version__

__all__ = ["__version__"]
