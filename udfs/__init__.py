"""Per-record logic of the re-ranking job: parsing, per-user state, features, scoring, ranked lists.

Everything here except `udfs.functions` and `udfs.scoring` is pure Python/numpy and is unit-tested
without a JVM; those two modules are the thin Flink wrappers around it.
"""

import os as _os
import sys as _sys


class LivePackagePath(list):
    """A package's ``__path__`` that follows ``sys.path``: recomputed on every submodule import.

    PyFlink's thread mode keeps one Python interpreter per TaskManager across jobs. Each job unpacks
    its Python files into a new directory on ``sys.path``, and the directory of a finished job is
    deleted. A package first imported by an earlier job keeps that deleted directory as its
    ``__path__``, so a submodule that job never imported cannot be found by a later one (seen: "No
    module named 'udfs.embed_functions'" after a ranking job had run on the same TaskManager).
    The import system iterates ``__path__`` afresh for each lookup, so iterating this list returns
    the package's directories that exist now: under ``sys.path`` entries first, then the original.
    (Modules a previous job did import stay as they were: a code change still needs fresh
    TaskManagers, see README "Run on a Flink cluster".)
    """

    def __init__(self, package: str, initial: list[str]) -> None:
        super().__init__(initial)
        self._tail = package.replace(".", _os.sep)

    def __iter__(self):
        here = [_os.path.join(entry, self._tail) for entry in _sys.path if isinstance(entry, str)
                and _os.path.isdir(_os.path.join(entry or _os.curdir, self._tail))]
        original = [p for p in list.__iter__(self) if _os.path.isdir(p)]
        return iter(dict.fromkeys(_os.path.abspath(p) for p in here + original))


__path__ = LivePackagePath(__name__, list(__path__))
