"""A local standalone Flink cluster built from the pip-installed PyFlink distribution.

    python -m jobs.cluster start        # assemble build/flink, start JobManager + TaskManager, wait ready
    python -m jobs.cluster status       # the REST /overview of the running cluster
    python -m jobs.cluster stop         # stop the two processes this module started (by PID)

The Flink home (`build/flink`) is assembled from PyFlink's `bin/`, `lib/` and `plugins/`, plus what a
`flink run -py` submission needs and the wheel does not put in `lib/`: `opt/flink-python-*.jar`
(without it: ClassNotFoundException ... ExternalPythonKeyedProcessOperator) and the Kafka connector
jars. Its `conf/config.yaml` is `flink-conf/config.yaml` (the file the job applies too), followed by
the few keys that only a standalone cluster has: its ports and slot count.

The processes run in the foreground of their own sessions (no daemon scripts, no pid files in
/tmp): their PIDs are recorded under `build/flink/run/` and `stop` ends exactly those.
Job submission, stop-with-savepoint and resubmission use Flink's own CLI (`bin/flink`), as a user
would; see README "Run on a Flink cluster".
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from jobs.config import REPO_ROOT
from jobs.java_build import JavaBuildError, java_jar
from udfs.errors import RerankError

log = logging.getLogger(__name__)
FLINK_HOME = REPO_ROOT / "build" / "flink"
FLINK_CONF = REPO_ROOT / "flink-conf" / "config.yaml"
KAFKA_JARS = (REPO_ROOT / "build" / "jars" / "flink-connector-kafka.jar",
              REPO_ROOT / "build" / "jars" / "kafka-clients.jar")
PLUGINS = ("metrics-prometheus",)
REPORTER_SRC = REPO_ROOT / "flink-conf" / "reporter"
CLUSTER_KEYS_MARK = "# --- standalone-cluster keys, written by jobs/cluster.py ---"
_JOB_ID = re.compile(r"JobID ([0-9a-f]{32})")
_SAVEPOINT = re.compile(r"Savepoint completed\. Path: (\S+)")


class ClusterError(RerankError):
    """The standalone cluster could not be assembled, started, reached or commanded."""


def pyflink_home() -> Path:
    import pyflink

    return Path(pyflink.__file__).resolve().parent


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard link (same file system: no extra disk), else copy. Jar files only, never directories:
    the scripts in bin/ resolve FLINK_HOME from their own real location."""
    if dst.exists():
        if dst.stat().st_size == src.stat().st_size:
            return
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def assemble_home(home: Path = FLINK_HOME, flink_conf: Path = FLINK_CONF,
                  jars: Sequence[Path] = KAFKA_JARS) -> Path:
    """Create (or refresh) a Flink home under `home`; idempotent. Returns `home`."""
    src = pyflink_home()
    missing = [str(j) for j in jars if not Path(j).is_file()]
    if missing:
        raise ClusterError(f"connector jars not found: {missing} (run scripts/bootstrap.sh)")
    for sub in ("lib", "opt", "plugins", "conf", "log", "run"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    # bin/ is copied (small scripts): a symlinked bin/ would make config.sh find PyFlink's home.
    shutil.copytree(src / "bin", home / "bin", dirs_exist_ok=True)
    for jar in sorted((src / "lib").glob("*.jar")):
        _link_or_copy(jar, home / "lib" / jar.name)
    python_jars = sorted((src / "opt").glob("flink-python-*.jar"))
    if not python_jars:
        raise ClusterError(f"no flink-python jar under {src / 'opt'}")
    # In lib/ for the cluster's Python operators; in opt/ for `flink run -py`, which ships it as
    # the job jar.
    _link_or_copy(python_jars[0], home / "lib" / python_jars[0].name)
    _link_or_copy(python_jars[0], home / "opt" / python_jars[0].name)
    for jar in jars:
        _link_or_copy(Path(jar), home / "lib" / Path(jar).name)
    for plugin in PLUGINS:
        (home / "plugins" / plugin).mkdir(exist_ok=True)
        for jar in (src / "plugins" / plugin).glob("*.jar"):
            _link_or_copy(jar, home / "plugins" / plugin / jar.name)
    build_loopback_reporter(home)
    for name in ("log4j.properties", "log4j-console.properties", "log4j-cli.properties",
                 "log4j-session.properties", "logback.xml", "logback-console.xml"):
        if (src / "conf" / name).is_file():
            shutil.copy2(src / "conf" / name, home / "conf" / name)
    shutil.copy2(flink_conf, home / "conf" / "config.yaml")
    return home


def build_loopback_reporter(home: Path = FLINK_HOME, target_dir: Path | None = None) -> Path:
    """Compile flink-conf/reporter/ (a Prometheus reporter that binds one address, 127.0.0.1 by
    default) into a jar beside Flink's own in plugins/metrics-prometheus/: same plugin, same class
    loader. Flink 2.3's PrometheusReporter listens on all interfaces and has no host option.
    `target_dir`: put the jar there instead (minicluster_reporter_jars)."""
    plugin_dir = home / "plugins" / "metrics-prometheus"
    target = (target_dir or plugin_dir) / "flink-rerank-prometheus-loopback.jar"
    classpath = ":".join([*map(str, plugin_dir.glob("flink-metrics-prometheus-*.jar")), str(home / "lib" / "*")])
    try:
        return java_jar(sorted(REPORTER_SRC.rglob("*.java")), classpath, target, "the loopback Prometheus reporter",
                        {"org.apache.flink.metrics.reporter.MetricReporterFactory":
                         "org.apache.flink.metrics.prometheus.LoopbackPrometheusReporterFactory"})
    except JavaBuildError as exc:
        raise ClusterError(str(exc)) from exc


def minicluster_reporter_jars(build_dir: Path = REPO_ROOT / "build" / "jars") -> list[str]:
    """The loopback Prometheus reporter for a job on the local PyFlink minicluster: Flink's reporter
    jar and ours, to append to the job's `jars`. The minicluster's plugin directory is PyFlink's own
    (fixed when its JVM starts, and without our reporter); on pipeline.jars the factory is found
    instead through the context class loader of the thread that starts the minicluster, which
    PyFlink extends with those jars. flink-conf/config.yaml already names the factory; give the
    job a copy of it with a free `metrics.reporter.prom.port`."""
    home = pyflink_home()
    prometheus = sorted((home / "plugins" / "metrics-prometheus").glob("flink-metrics-prometheus-*.jar"))
    if not prometheus:
        raise ClusterError(f"no flink-metrics-prometheus jar under {home / 'plugins' / 'metrics-prometheus'}")
    return [str(prometheus[0]), str(build_loopback_reporter(home, build_dir))]


@dataclass(frozen=True)
class ClusterSpec:
    """What differs between one standalone cluster and another on the same machine."""

    rest_port: int = 8081
    rpc_port: int = 6123
    slots: int = 2
    jm_metrics_port: int = 9250
    tm_metrics_port: int = 9251

    def cluster_keys(self) -> dict[str, str]:
        """Keys only a standalone cluster reads, appended to conf/config.yaml (the CLI reads them too)."""
        return {"rest.port": str(self.rest_port), "jobmanager.rpc.port": str(self.rpc_port),
                "taskmanager.numberOfTaskSlots": str(self.slots)}

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def metrics_url(self, process: str = "taskmanager") -> str:
        port = self.tm_metrics_port if process == "taskmanager" else self.jm_metrics_port
        return f"http://127.0.0.1:{port}/metrics"


class StandaloneCluster:
    """JobManager + one TaskManager on loopback, owned by this object (and by its pid files)."""

    PROCESSES = {"jobmanager": "jobmanager.sh", "taskmanager": "taskmanager.sh"}

    def __init__(self, spec: ClusterSpec = ClusterSpec(), home: Path = FLINK_HOME,
                 flink_conf: Path = FLINK_CONF) -> None:
        self.spec = spec
        self.home = Path(home)
        self.flink_conf = Path(flink_conf)

    # -- processes -----------------------------------------------------------------------------
    def _pid_file(self, name: str) -> Path:
        return self.home / "run" / f"{name}.pid"

    def _write_conf(self) -> None:
        conf = self.home / "conf" / "config.yaml"
        text = self.flink_conf.read_text()
        keys = "\n".join(f"{k}: {v}" for k, v in self.spec.cluster_keys().items())
        conf.write_text(f"{text.rstrip()}\n\n{CLUSTER_KEYS_MARK}\n{keys}\n")

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(FLINK_HOME=str(self.home), FLINK_CONF_DIR=str(self.home / "conf"),
                   FLINK_LOG_DIR=str(self.home / "log"), FLINK_PLUGINS_DIR=str(self.home / "plugins"))
        env.pop("FLINK_LIB_DIR", None)
        return env

    def start(self, timeout_s: float = 90.0) -> "StandaloneCluster":
        if self.running_pids():
            raise ClusterError(f"a cluster from {self.home} is already running: {self.running_pids()} "
                               f"(python -m jobs.cluster stop)")
        assemble_home(self.home, self.flink_conf)
        self._write_conf()
        t0 = time.monotonic()
        try:
            for name in self.PROCESSES:
                self._spawn(name)
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        log.info("cluster ready at %s in %.1f s", self.spec.rest_url, time.monotonic() - t0)
        return self

    def _spawn(self, name: str) -> int:
        """Start one process (jobmanager or taskmanager) in its own session; records its pid."""
        metrics_port = {"jobmanager": self.spec.jm_metrics_port, "taskmanager": self.spec.tm_metrics_port}
        with (self.home / "log" / f"{name}.out").open("ab") as out:
            proc = subprocess.Popen(
                [str(self.home / "bin" / self.PROCESSES[name]), "start-foreground",
                 "-D", f"metrics.reporter.prom.port={metrics_port[name]}"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self._env(), cwd=str(self.home), start_new_session=True)
        self._pid_file(name).write_text(f"{proc.pid} {_start_time(proc.pid)}")
        log.info("%s started, pid %d", name, proc.pid)
        return proc.pid

    def kill_taskmanager(self) -> int:
        """SIGKILL the TaskManager's process group (the JVM and the Python it runs): a crash, no
        clean-up, no final checkpoint. Returns the killed pid."""
        pid = self.running_pids().get("taskmanager")
        if pid is None:
            raise ClusterError("no TaskManager of this cluster is running")
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        self._pid_file("taskmanager").unlink(missing_ok=True)
        log.warning("taskmanager pid %d killed (SIGKILL)", pid)
        return pid

    def start_taskmanager(self, timeout_s: float = 90.0) -> int:
        """Start a fresh TaskManager (what a supervisor does after a crash) and wait until its
        slots are registered with the JobManager."""
        if "taskmanager" in self.running_pids():
            raise ClusterError("a TaskManager of this cluster is already running")
        # The JobManager lists a killed TaskManager until its heartbeat times out: wait for a new id.
        before = {tm["id"] for tm in self.rest("/taskmanagers")["taskmanagers"]}
        pid = self._spawn("taskmanager")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if "taskmanager" not in self.running_pids():
                raise ClusterError(f"the new TaskManager exited during start-up; see {self.home / 'log'}")
            if {tm["id"] for tm in self.rest("/taskmanagers")["taskmanagers"]} - before:
                log.info("taskmanager pid %d registered", pid)
                return pid
            time.sleep(0.5)
        raise ClusterError(f"the new TaskManager did not register within {timeout_s}s; see {self.home / 'log'}")

    def running_pids(self) -> dict[str, int]:
        """PIDs from our pid files whose process is alive and is the one we started (same start
        time: a recycled PID is not ours)."""
        pids = {}
        for name in self.PROCESSES:
            try:
                pid, started = (int(x) for x in self._pid_file(name).read_text().split())
            except (OSError, ValueError):
                continue
            if _alive(pid) and _start_time(pid) == started:
                pids[name] = pid
        return pids

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM to each process group we started (the JVM and its Python workers), then SIGKILL."""
        for name, pid in self.running_pids().items():
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.2)
            if _alive(pid):
                log.warning("%s pid %d ignored SIGTERM; killing", name, pid)
                os.killpg(pid, signal.SIGKILL)
            log.info("%s pid %d stopped", name, pid)
        for name in self.PROCESSES:
            self._pid_file(name).unlink(missing_ok=True)

    def __enter__(self) -> "StandaloneCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- REST ----------------------------------------------------------------------------------
    def rest(self, path: str, body: dict | None = None, timeout_s: float = 10.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.spec.rest_url + path, data=data,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return json.loads(resp.read() or b"null")

    def overview(self) -> dict:
        return self.rest("/overview")

    def wait_ready(self, timeout_s: float) -> dict:
        """Until /overview shows a TaskManager with all its slots registered."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            dead = [n for n in self.PROCESSES if n not in self.running_pids()]
            if dead:
                raise ClusterError(f"{dead} exited during start-up; see {self.home / 'log'}")
            try:
                last = self.overview()
                if last.get("taskmanagers", 0) >= 1 and last.get("slots-total", 0) >= self.spec.slots:
                    return last
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last = exc
            time.sleep(0.5)
        raise ClusterError(f"cluster not ready after {timeout_s}s: {last}; see {self.home / 'log'}")

    def job_status(self, job_id: str) -> str:
        return self.rest(f"/jobs/{job_id}")["state"]

    def _running_detail(self, job_id: str) -> tuple[bool, dict]:
        """(every task RUNNING?, the job's REST detail); raises once the job has ended."""
        detail = self.rest(f"/jobs/{job_id}")
        if detail["state"] in ("FAILED", "CANCELED", "FINISHED"):
            raise ClusterError(f"job {job_id} is {detail['state']}: {self.root_exception(job_id)}")
        return detail["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in detail["vertices"]), detail

    def wait_job_running(self, job_id: str, timeout_s: float = 60.0) -> None:
        """Until the job and every one of its tasks is RUNNING (sources then read)."""
        deadline = time.monotonic() + timeout_s
        detail: Any = None
        while time.monotonic() < deadline:
            running, detail = self._running_detail(job_id)
            if running:
                return
            if detail["state"] == "RESTARTING" or any(v["status"] == "FAILED" for v in detail["vertices"]):
                raise ClusterError(f"job {job_id} failed while starting: {self.root_exception(job_id)}")
            time.sleep(0.5)
        raise ClusterError(f"job {job_id} not running after {timeout_s}s: "
                           f"{detail and [(v['name'], v['status']) for v in detail['vertices']]}")

    def restores(self, job_id: str) -> int:
        """How often the job has been restored from a checkpoint after a failure.

        (Its `numRestarts` metric is no count of recoveries: it stayed at 1 over two TaskManager
        kills, each followed by a restore, in tests/faults/test_taskmanager_kill.py.)
        """
        return int(self.rest(f"/jobs/{job_id}/checkpoints")["counts"]["restored"])

    def wait_recovered(self, job_id: str, restores: int, timeout_s: float = 180.0) -> None:
        """Until the job has been restored at least `restores` times and runs again, every task RUNNING."""
        deadline = time.monotonic() + timeout_s
        detail: Any = None
        while time.monotonic() < deadline:
            running, detail = self._running_detail(job_id)
            if running and self.restores(job_id) >= restores:
                return
            time.sleep(0.5)
        raise ClusterError(f"job {job_id} not recovered ({restores} restores) after {timeout_s}s: "
                           f"{detail and detail['state']}, {self.root_exception(job_id)}")

    def root_exception(self, job_id: str) -> str:
        """The latest failure of a job as Flink reports it (first lines of the stack trace)."""
        entries = self.rest(f"/jobs/{job_id}/exceptions").get("exceptionHistory", {}).get("entries", [])
        return "\n".join(entries[0]["stacktrace"].splitlines()[:12]) if entries else "(no exception recorded)"

    def active_jobs(self) -> list[str]:
        return [j["id"] for j in self.rest("/jobs")["jobs"]
                if j["status"] not in ("FINISHED", "CANCELED", "FAILED")]

    # -- Flink CLI -----------------------------------------------------------------------------
    def flink(self, *args: str, timeout_s: float = 180.0) -> str:
        """Run `bin/flink ARGS` against this cluster; returns its output (raises on failure)."""
        cmd = [str(self.home / "bin" / "flink"), *args]
        log.info("$ %s", " ".join(cmd))
        proc = subprocess.run(cmd, env=self._env(), cwd=str(REPO_ROOT), capture_output=True, text=True,
                              timeout=timeout_s)
        out = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise ClusterError(f"{' '.join(cmd)} exited {proc.returncode}:\n{out[-4000:]}")
        return out

    def submit(self, job_args: Sequence[str], savepoint: str | None = None,
               python: str = sys.executable, entry_point: str = "jobs/rerank_job.py") -> str:
        """`flink run -d -py jobs/rerank_job.py` (optionally from a savepoint); returns the job id."""
        args = ["run", "--detached"]
        if savepoint:
            args += ["--fromSavepoint", savepoint]
        args += ["--python", entry_point, "--pyClientExecutable", python, "--pyExecutable", python,
                 *job_args]
        out = self.flink(*args)
        match = _JOB_ID.search(out)
        if not match:
            raise ClusterError(f"no job id in the output of flink run:\n{out[-4000:]}")
        return match.group(1)

    def stop_with_savepoint(self, job_id: str, directory: str | Path) -> str:
        """`flink stop --savepointPath DIR JOB` (canonical format); returns the savepoint path."""
        out = self.flink("stop", "--type", "canonical", "--savepointPath", str(directory), job_id)
        match = _SAVEPOINT.search(out)
        if not match:
            raise ClusterError(f"no savepoint path in the output of flink stop:\n{out[-4000:]}")
        return match.group(1)

    def cancel(self, job_id: str) -> None:
        self.flink("cancel", job_id)


def _start_time(pid: int) -> int | None:
    """Process start time (clock ticks after boot), from /proc/PID/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(description="Local standalone Flink cluster (build/flink) on 127.0.0.1")
    p.add_argument("command", choices=["assemble", "start", "stop", "status"])
    p.add_argument("--rest-port", type=int, default=ClusterSpec.rest_port)
    p.add_argument("--rpc-port", type=int, default=ClusterSpec.rpc_port)
    p.add_argument("--slots", type=int, default=ClusterSpec.slots)
    p.add_argument("--jm-metrics-port", type=int, default=ClusterSpec.jm_metrics_port)
    p.add_argument("--tm-metrics-port", type=int, default=ClusterSpec.tm_metrics_port)
    p.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for readiness")
    args = p.parse_args(argv)
    spec = ClusterSpec(args.rest_port, args.rpc_port, args.slots, args.jm_metrics_port, args.tm_metrics_port)
    cluster = StandaloneCluster(spec)
    if args.command == "assemble":
        print(assemble_home())
    elif args.command == "start":
        cluster.start(args.timeout)
        print(json.dumps({"rest": spec.rest_url, "metrics": [spec.metrics_url("jobmanager"), spec.metrics_url()],
                          "pids": cluster.running_pids(), "overview": cluster.overview()}, indent=2))
    elif args.command == "stop":
        cluster.stop()
    else:
        pids = cluster.running_pids()
        print(json.dumps({"pids": pids, "overview": cluster.overview() if pids else None}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
