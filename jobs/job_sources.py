"""The project's Python sources as one zip, the form Flink ships to its Python workers.

Flink puts a shipped *zip*'s root on the workers' PYTHONPATH, but a shipped *directory* itself:
`add_python_file("udfs")` (or `-pyfs udfs`) makes `udfs/records.py` importable as `records`, not
`udfs.records`. (The minicluster hides this: its workers start in the client's working directory.)

Not named `packaging.py`: under `flink run -py jobs/rerank_job.py` the directory jobs/ is on
`sys.path` of the client and the workers, and that name would shadow the `packaging` distribution
(Beam's import of it fails and PyFlink silently drops its Cython coders).
"""
from __future__ import annotations

import hashlib
import io
import tempfile
import zipfile
from pathlib import Path
from typing import Sequence

from jobs.config import REPO_ROOT

PROJECT_PACKAGES = ("jobs", "udfs", "models")


def project_sources_zip(packages: Sequence[str] = PROJECT_PACKAGES, root: Path = REPO_ROOT,
                        out_dir: Path | None = None) -> Path:
    """Zip the packages' .py files (no model artifacts, no caches) to `out_dir`; returns the path.

    The name carries a digest of the content, so a file for a given code version is written once and
    stays in place while a job that ships it is running.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for package in packages:
            for path in sorted((root / package).rglob("*.py")):
                if "__pycache__" in path.parts:
                    continue
                info = zipfile.ZipInfo(str(path.relative_to(root)), date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())
    data = buf.getvalue()
    out_dir = Path(out_dir or Path(tempfile.gettempdir()) / "flink-rerank")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"rerank-src-{hashlib.sha256(data).hexdigest()[:12]}.zip"
    if not target.is_file():
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
    return target
