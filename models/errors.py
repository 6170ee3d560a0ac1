"""Errors of the ``models`` package, under the project's one base class ``RerankError``."""

from udfs.errors import RerankError


class ModelError(RerankError):
    """Base class of every error raised by the ``models`` package."""


class DataError(ModelError):
    """Input data is missing, malformed or inconsistent (names file and field)."""


class ArtifactError(ModelError):
    """A model artifact directory is missing files or is internally inconsistent."""


class ExportError(ModelError):
    """ONNX export failed its checks (checker or parity against eager PyTorch)."""
