"""User-id pseudonymization: a keyed HMAC applied at ingress, before ids become state keys.

The job computes it in the JVM with the Java function `udfs/java/rerank/udf/Pseudonym.java`
(compiled by `jobs.runner.udf_jar()`), in the SQL that extracts the key, so raw ids are never state keys and
never leave the job; `pseudonym()` here is the same function for callers who own the key and want
to map ranked lists back to their users (and for tests). The key is read from a file or an
environment variable (`key_source`: "file:/path" or "env:NAME"), never from the repository or the
job graph.
"""
from __future__ import annotations

import hashlib
import hmac
import os
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
