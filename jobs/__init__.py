"""Flink job graphs and their command-line entry points."""

from udfs import LivePackagePath as _LivePackagePath

__path__ = _LivePackagePath(__name__, list(__path__))  # see udfs.LivePackagePath
