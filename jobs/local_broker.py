"""Start and stop a local Kafka-protocol broker on a free loopback port (demo and tests).

The broker is the Tansu binary that `scripts/bootstrap.sh` extracts to build/bin/tansu. Only this
module knows that: everything else talks to `bootstrap_servers` like to any Kafka cluster.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from jobs.config import REPO_ROOT
from udfs.errors import RerankError

log = logging.getLogger(__name__)
BROKER_BIN = REPO_ROOT / "build" / "bin" / "tansu"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalBroker:
    """A broker process owned by this object: `with LocalBroker() as b: b.bootstrap_servers`."""

    def __init__(self, binary: Path = BROKER_BIN, port: int | None = None, log_path: Path | None = None) -> None:
        if not binary.is_file():
            raise RerankError(f"broker binary not found at {binary}: run scripts/bootstrap.sh")
        self.binary = binary
        self.port = port or free_port()
        self.log_path = log_path or REPO_ROOT / "build" / f"broker-{self.port}.log"
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> "LocalBroker":
        url = f"tcp://127.0.0.1:{self.port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(
                [str(self.binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready(timeout_s)
        log.info("broker pid %d listening on %s", self.process.pid, self.bootstrap_servers)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RerankError(f"broker exited with {self.process.returncode}; see {self.log_path}")
            try:
                # A plain TCP connect first: kafka-python logs every refused connection as an error.
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=3000)
                admin.list_topics()
                admin.close()
                return
            except (KafkaError, OSError) as exc:
                last = exc
                time.sleep(0.3)
        self.stop()
        raise RerankError(f"broker not ready after {timeout_s}s: {last}")

    def create_topics(self, topics: list[str], partitions: int = 1) -> None:
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=10000)
        try:
            admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1) for t in topics])
        except TopicAlreadyExistsError:
            log.info("topics already exist: %s", topics)
        finally:
            admin.close()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        log.info("broker pid %d stopped", self.process.pid)

    def __enter__(self) -> "LocalBroker":
        return self.start()

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
