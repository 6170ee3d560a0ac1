"""One exception hierarchy for everything under ``models``."""


class ModelError(Exception):
    """Base class of every error raised by the ``models`` package."""


class DataError(ModelError):
    """Input data is missing, malformed or inconsistent (names file and field)."""


class ArtifactError(ModelError):
    """A model artifact directory is missing files or is internally inconsistent."""


class ExportError(ModelError):
    """ONNX export failed its checks (checker or parity against eager PyTorch)."""
