"""docker/ cannot be built here (no container engine): check it against the local cluster instead.

Every path the Dockerfile copies and the compose file builds, runs or loads exists; both use the
local cluster's configuration file, connector jars and entry point (jobs/cluster.py); the job flags
of the submitter are flags the job accepts; the Flink image matches the PyFlink version.
"""
from __future__ import annotations

import fnmatch
import re
import shlex
import zipfile
from pathlib import Path

import pytest
import yaml

from jobs.cluster import FLINK_CONF, KAFKA_JARS, pyflink_home
from jobs.config import REPO_ROOT, JobConfig
from models.artifact import load_artifact

DOCKERFILE = REPO_ROOT / "docker" / "Dockerfile"
COMPOSE = REPO_ROOT / "docker" / "docker-compose.yml"
IMAGE_ROOT = "/opt/flink-rerank"


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def copies() -> list[tuple[list[str], str]]:
    out = []
    for op, args in dockerfile_instructions():
        if op == "COPY" and not args.startswith("--from"):
            *sources, dest = shlex.split(args)
            out.append((sources, dest))
    return out


def dockerignored(path: str) -> bool:
    ignored = False
    for pattern in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern + "/*"):
            ignored = not negate
    return ignored


def test_dockerfile_copies_exist_and_are_in_the_build_context():
    assert copies(), "no COPY in the Dockerfile"
    for sources, _ in copies():
        for src in sources:
            assert (REPO_ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"
            assert not dockerignored(src.rstrip("/")), f"{src} is excluded by .dockerignore"


def test_image_has_the_local_clusters_config_jars_and_python_jar():
    dest_of = {src: dest for sources, dest in copies() for src in sources}
    assert dest_of[str(FLINK_CONF.relative_to(REPO_ROOT))] == "/opt/flink/conf/config.yaml"
    for jar in KAFKA_JARS:
        assert dest_of[str(jar.relative_to(REPO_ROOT))] == "/opt/flink/lib/"
    run = " ".join(args for op, args in dockerfile_instructions() if op == "RUN")
    # The same flink-python jar step as jobs/cluster.assemble_home, from the distribution's opt/.
    assert "cp /opt/flink/opt/flink-python-*.jar /opt/flink/lib/" in run
    assert list((pyflink_home() / "opt").glob("flink-python-*.jar")), "distribution layout changed"
    assert (pyflink_home() / "plugins" / "metrics-prometheus").is_dir()


def test_flink_image_matches_pyflink_version():
    from pyflink.version import __version__

    image = next(args for op, args in dockerfile_instructions() if op == "ARG" and args.startswith("FLINK_IMAGE="))
    assert image.split("=", 1)[1].startswith(f"flink:{__version__}-"), (image, __version__)
    assert f'"apache-flink=={__version__}"' in (REPO_ROOT / "pyproject.toml").read_text()


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_builds_this_dockerfile(compose):
    for name in ("jobmanager", "taskmanager", "submitter"):
        build = compose["services"][name]["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == REPO_ROOT and (context / build["dockerfile"]).resolve() == DOCKERFILE
    assert {"kafka", "topics", "jobmanager", "taskmanager", "submitter"} <= set(compose["services"])
    assert compose["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft


def test_compose_submitter_runs_the_entry_point_with_valid_job_flags(compose):
    submitter = compose["services"]["submitter"]
    args = [str(a) for a in submitter["command"]]
    assert submitter["entrypoint"] == ["/opt/flink/bin/flink"] and args[0] == "run"
    entry = args[args.index("--python") + 1]
    assert (REPO_ROOT / entry).is_file() and entry == "jobs/rerank_job.py"
    assert submitter["working_dir"] == IMAGE_ROOT
    env = dict(line.split("=", 1) for _, args_ in dockerfile_instructions() if _ == "ENV"
               for line in shlex.split(args_) if "=" in line)
    assert args[args.index("--pyExecutable") + 1] == env["RERANK_PYTHON_EXECUTABLE"] == "/opt/venv/bin/python"
    job_args = args[args.index("--pyExecutable") + 2:]
    cfg = JobConfig.from_args(job_args, environ={})  # raises SystemExit on an unknown flag
    assert cfg.bootstrap_servers == "kafka:9092" and cfg.jar_paths == []  # jars are in lib/
    # The model directory, mapped back from the image to the repository, is a loadable artifact.
    model = Path(cfg.model_dir)
    assert model.is_relative_to(IMAGE_ROOT)
    load_artifact(REPO_ROOT / model.relative_to(IMAGE_ROOT))
    assert env["RERANK_MODEL_DIR"] == cfg.model_dir


def test_compose_overrides_only_existing_settings(compose):
    """The container overrides touch keys flink-conf/config.yaml has (or the cluster sets), and
    name a reporter class that exists in the distribution's plugin."""
    from jobs.cluster import ClusterSpec
    from jobs.config import load_flink_conf

    props = yaml.safe_load(compose["x-flink"]["environment"]["FLINK_PROPERTIES"])
    known = set(load_flink_conf(FLINK_CONF)) | set(ClusterSpec().cluster_keys())
    assert set(props) <= known, set(props) - known
    factory = props["metrics.reporter.prom.factory.class"]
    jar = next((pyflink_home() / "plugins" / "metrics-prometheus").glob("flink-metrics-prometheus-*.jar"))
    assert factory.replace(".", "/") + ".class" in zipfile.ZipFile(jar).namelist()
