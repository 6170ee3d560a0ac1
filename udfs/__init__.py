"""Per-record logic of the re-ranking job: parsing, per-user state, features, scoring, ranked lists.

Everything here except `udfs.functions` and `udfs.scoring` is pure Python/numpy and is unit-tested
without a JVM; those two modules are the thin Flink wrappers around it.
"""
