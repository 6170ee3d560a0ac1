"""Compile the project's small Java pieces into jars with the JDK's `javac` (no Maven: Maven Central
is not reachable on the build machines, and these need only Flink's own jars on the classpath)."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Mapping, Sequence

from udfs.errors import RerankError


class JavaBuildError(RerankError):
    """javac is missing or the sources do not compile."""


def java_jar(sources: Sequence[Path], classpath: str, target: Path, what: str,
             services: Mapping[str, str] | None = None) -> Path:
    """`target`, compiled from `sources` when any is newer than it; `services`: META-INF/services
    entries (interface -> implementation class). `what` names the piece in errors."""
    if target.is_file() and all(s.stat().st_mtime <= target.stat().st_mtime for s in sources):
        return target
    javac = shutil.which("javac")
    if javac is None:
        raise JavaBuildError(f"javac not found: {what} is compiled from source and needs a JDK 17 (not only a JRE)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([javac, "--release", "17", "-nowarn", "-d", tmp, "-cp", classpath, *map(str, sources)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise JavaBuildError(f"compiling {what} failed: {proc.stderr[-2000:]}")
        partial = target.with_suffix(".tmp")
        with zipfile.ZipFile(partial, "w") as jar:
            for cls in sorted(Path(tmp).rglob("*.class")):
                jar.write(cls, str(cls.relative_to(tmp)))
            for interface, implementation in (services or {}).items():
                jar.writestr(f"META-INF/services/{interface}", implementation + "\n")
        partial.replace(target)  # never a half-written jar under the final name
    return target
