"""Start and stop a local Kafka-protocol broker on a free loopback port (demo and tests).

The broker is the Tansu binary that `scripts/bootstrap.sh` extracts to build/bin/tansu. Only this
module knows that: everything else talks to `bootstrap_servers` like to any Kafka cluster.

By default the broker keeps everything in memory (gone when it stops). `LocalObjectStore` runs an
S3-compatible store (SeaweedFS `weed mini`, build/bin/weed) on loopback; a broker given
`storage=store.storage_url` and `env=store.client_env()` keeps topics and committed offsets there,
so `restart()` brings back the same log: what the broker-restart fault test needs.
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
from typing import Mapping

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from jobs.config import REPO_ROOT
from udfs.errors import RerankError

log = logging.getLogger(__name__)
BROKER_BIN = REPO_ROOT / "build" / "bin" / "tansu"
OBJECT_STORE_BIN = REPO_ROOT / "build" / "bin" / "weed"
MEMORY_STORAGE = "memory://tansu/"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process_group(process: subprocess.Popen | None, name: str, timeout_s: float) -> None:
    """SIGTERM to the process group a server of ours was started in, SIGKILL after `timeout_s`."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    log.info("%s pid %d stopped", name, process.pid)


class LocalBroker:
    """A broker process owned by this object: `with LocalBroker() as b: b.bootstrap_servers`."""

    def __init__(self, binary: Path = BROKER_BIN, port: int | None = None, log_path: Path | None = None,
                 storage: str = MEMORY_STORAGE, env: Mapping[str, str] | None = None) -> None:
        if not binary.is_file():
            raise RerankError(f"broker binary not found at {binary}: run scripts/bootstrap.sh")
        self.binary = binary
        self.port = port or free_port()
        self.log_path = log_path or REPO_ROOT / "build" / f"broker-{self.port}.log"
        self.storage = storage
        self.env = dict(env or {})
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> "LocalBroker":
        url = f"tcp://127.0.0.1:{self.port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Appended: a restarted broker's log follows the first one's.
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [str(self.binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", self.storage],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **self.env})
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
        stop_process_group(self.process, "broker", timeout_s=10)

    def restart(self, down_s: float = 0.0, timeout_s: float = 30.0) -> "LocalBroker":
        """Stop, stay down `down_s` seconds, start again on the same port and storage.

        With memory storage the restarted broker is empty; with an object store it serves the same
        topics, records and committed offsets.
        """
        self.stop()
        time.sleep(down_s)
        return self.start(timeout_s)

    def __enter__(self) -> "LocalBroker":
        return self.start()

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class LocalObjectStore:
    """An S3-compatible object store on loopback (SeaweedFS `weed mini`) holding one bucket.

    Its data lives under `data_dir` (durable on disk, across broker restarts). Every port it opens
    is a free loopback port chosen here (its gRPC ports are the HTTP port + 10000, so HTTP ports are
    drawn below 55536). The credentials are throwaway ones this process hands to its own broker.
    """

    ACCESS_KEY = "rerank-local"
    SECRET_KEY = "rerank-local-secret"  # loopback only, for a store this object starts and stops
    # weed mini's components with an HTTP port of their own (each also opens HTTP + 10000 for gRPC).
    PORT_FLAGS = ("master.port", "volume.port", "filer.port", "s3.port", "webdav.port", "admin.port",
                  "s3.port.iceberg", "s3.port.lance")

    def __init__(self, data_dir: Path, bucket: str = "tansu", binary: Path = OBJECT_STORE_BIN,
                 log_path: Path | None = None) -> None:
        if not binary.is_file():
            raise RerankError(f"object store binary not found at {binary}: run scripts/bootstrap.sh")
        self.binary = binary
        self.data_dir = Path(data_dir)
        self.bucket = bucket
        self.log_path = log_path or self.data_dir / "weed.log"
        self.ports = {}
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def storage_url(self) -> str:
        """The broker's --storage-engine for this store."""
        return f"s3://{self.bucket}/"

    def client_env(self) -> dict[str, str]:
        """Environment of an S3 client (the broker) talking to this store."""
        return {"AWS_ACCESS_KEY_ID": self.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY,
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT": self.endpoint, "AWS_ALLOW_HTTP": "true"}

    def start(self, timeout_s: float = 60.0) -> "LocalObjectStore":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ports = {flag: _free_port_below(55536, taken=set(self.ports.values())) for flag in self.PORT_FLAGS}
        args = [str(self.binary), "mini", f"-dir={self.data_dir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                f"-bucket={self.bucket}", "-admin.ui=false", *(f"-{flag}={port}" for flag, port in self.ports.items())]
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                            env={**os.environ, "AWS_ACCESS_KEY_ID": self.ACCESS_KEY,
                                                 "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY},
                                            cwd=str(self.data_dir))
        self._wait_ready(timeout_s)
        log.info("object store pid %d at %s (bucket %s)", self.process.pid, self.endpoint, self.bucket)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        """Until the S3 endpoint lists the bucket (mini creates it once its filer is up)."""
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout_s
        last: object = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RerankError(f"object store exited with {self.process.returncode}; see {self.log_path}")
            try:
                # Anonymous HEAD: any HTTP answer (403 included) means the S3 gateway serves requests.
                urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/{self.bucket}", method="HEAD"),
                                       timeout=2)
                return
            except urllib.error.HTTPError as exc:
                if exc.code in (403, 401):
                    return
                last = exc
            except OSError as exc:
                last = exc
            time.sleep(0.5)
        self.stop()
        raise RerankError(f"object store not ready after {timeout_s}s: {last}; see {self.log_path}")

    def stop(self) -> None:
        stop_process_group(self.process, "object store", timeout_s=20)

    def __enter__(self) -> "LocalObjectStore":
        return self.start()

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def _free_port_below(limit: int, taken: set[int], attempts: int = 200) -> int:
    for _ in range(attempts):
        port = free_port()
        if port < limit and port not in taken:
            return port
    raise RerankError(f"no free loopback port below {limit} after {attempts} tries")


def main(argv: list[str] | None = None) -> None:
    """`python -m jobs.local_broker [--port 9092] [--topics a,b,...]`: run a broker until Ctrl-C."""
    import argparse

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description="A local Kafka-protocol broker (Tansu, in memory) on loopback")
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--topics", default="user-events,rank-requests,ranked-lists,dead-letters",
                        help="comma-separated topics to create (2 partitions each)")
    parser.add_argument("--control-topics", default="model-updates", help="comma-separated, 1 partition each")
    args = parser.parse_args(argv)

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # leave the `with` block: the broker is stopped, not orphaned

    signal.signal(signal.SIGTERM, stop)
    with LocalBroker(port=args.port) as broker:
        broker.create_topics([t for t in args.topics.split(",") if t], partitions=2)
        broker.create_topics([t for t in args.control_topics.split(",") if t], partitions=1)
        print(f"broker listening on {broker.bootstrap_servers} (Ctrl-C stops it)", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
