"""`flink run -py jobs/rerank_job.py` puts jobs/ itself on sys.path (client and workers): no module
there may shadow an installed one (jobs/packaging.py once hid `packaging` and, with it, PyFlink's
Cython coders)."""
import importlib.util
import subprocess
import sys

from jobs.config import REPO_ROOT


def test_no_module_in_jobs_shadows_an_installed_one():
    names = sorted(p.stem for p in (REPO_ROOT / "jobs").glob("*.py") if p.stem != "__init__")
    # A clean interpreter of the same environment, without the repository on its path.
    probe = "import importlib.util, sys; print([n for n in sys.argv[1:] if importlib.util.find_spec(n)])"
    out = subprocess.run([sys.executable, "-I", "-c", probe, *names], capture_output=True, text=True,
                         check=True, cwd="/").stdout
    assert out.strip() == "[]", f"modules of jobs/ that shadow installed ones: {out.strip()}"


def test_entry_point_runs_as_a_script():
    out = subprocess.run([sys.executable, str(REPO_ROOT / "jobs" / "rerank_job.py"), "--help"],
                         capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--bootstrap-servers" in out.stdout and "--model-dir" in out.stdout
    assert importlib.util.find_spec("jobs.rerank_job") is not None
