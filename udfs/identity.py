"""User-id pseudonymization: a keyed HMAC applied at ingress, before ids become state keys.

The job computes it in the JVM with the Java function `udfs/java/rerank/udf/Pseudonym.java`
(compiled by `udf_jar()`), in the SQL that extracts the key, so raw ids are never state keys and
never leave the job; `pseudonym()` here is the same function for callers who own the key and want
to map ranked lists back to their users (and for tests). The key is read from a file or an
environment variable (`key_source`: "file:/path" or "env:NAME"), never from the repository or the
job graph.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from udfs.errors import ConfigError

MIN_KEY_BYTES = 16
JAVA_SOURCES = Path(__file__).resolve().parent / "java"
FUNCTION_CLASS = "rerank.udf.Pseudonym"


def read_key(key_source: str) -> bytes:
    """The key bytes from "file:/path" (one trailing newline dropped) or "env:NAME" (UTF-8)."""
    if key_source.startswith("file:"):
        path = Path(key_source[5:])
        if not path.is_file():
            raise ConfigError(f"pseudonymization key file not found: {path}")
        key = path.read_bytes()
        key = key[:-1] if key.endswith(b"\n") else key
    elif key_source.startswith("env:"):
        value = os.environ.get(key_source[4:])
        if value is None:
            raise ConfigError(f"pseudonymization key: environment variable {key_source[4:]} is not set")
        key = value.encode()
    else:
        raise ConfigError(f"pseudonymization key source must be file:PATH or env:NAME, got {key_source!r}")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"pseudonymization key from {key_source} has {len(key)} bytes; at least {MIN_KEY_BYTES}")
    return key


def pseudonym(user_id: str, key: bytes) -> str:
    """The first 16 bytes of HMAC-SHA256(key, UTF-8 user id), hex: what the job writes as user_id."""
    return hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def udf_jar(build_dir: Path) -> Path:
    """Compile the project's Java functions into `build_dir/rerank-udfs.jar` (when sources changed).

    Needs a JDK's `javac` where the job is built; the classpath is PyFlink's own lib/ (the Table
    API it ships).
    """
    import pyflink

    target = build_dir / "rerank-udfs.jar"
    sources = sorted(JAVA_SOURCES.rglob("*.java"))
    if target.is_file() and all(s.stat().st_mtime <= target.stat().st_mtime for s in sources):
        return target
    javac = shutil.which("javac")
    if javac is None:
        raise ConfigError("javac not found: pseudonymization compiles a small Java function (needs a JDK 17)")
    classpath = str(Path(pyflink.__file__).resolve().parent / "lib" / "*")
    build_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([javac, "--release", "17", "-nowarn", "-d", tmp, "-cp", classpath, *map(str, sources)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise ConfigError(f"compiling {JAVA_SOURCES} failed: {proc.stderr[-2000:]}")
        partial = target.with_suffix(".tmp")
        with zipfile.ZipFile(partial, "w") as jar:
            for cls in sorted(Path(tmp).rglob("*.class")):
                jar.write(cls, str(cls.relative_to(tmp)))
        partial.replace(target)
    return target
