"""kmsframe: a financial-grade key management system built from plugins.

The public API for plugin authors is this package's top level,
:mod:`kmsframe.hookspecs`, :mod:`kmsframe.providers`, :mod:`kmsframe.errors`,
:mod:`kmsframe.model`, :mod:`kmsframe.secrets` and :mod:`kmsframe.testing`.
"""

from .hookspecs import hookimpl

__all__ = ["hookimpl", "__version__"]
__version__ = "0.1.0"
