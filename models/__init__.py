"""Sequential ranking models for the re-ranking engine.

Layout: ``data`` (MovieLens-1M loader and leave-one-out split), ``sasrec``
(model + config), ``train`` / ``evaluate`` (CLIs), ``export`` (ONNX + parity
gate), ``artifact`` (the versioned directory the Flink job loads; numpy-only).
Importing this package does no work.
"""

from udfs import LivePackagePath as _LivePackagePath

__path__ = _LivePackagePath(__name__, list(__path__))  # see udfs.LivePackagePath
