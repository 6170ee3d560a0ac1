"""Flink job graphs and their command-line entry points."""
