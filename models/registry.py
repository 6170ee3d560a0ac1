"""A model registry: immutable, validated versions under ``<root>/<name>/<version>/``.

    python -m models.registry publish models/sasrec/v3 --root /srv/registry [--name sasrec --version v3]
    python -m models.registry list --root /srv/registry
    python -m models.registry validate /srv/registry/sasrec/v3
    python -m models.registry announce sasrec/v3 --root /srv/registry --bootstrap-servers host:9092 \
        [--arms control=sasrec/v2:0.9,treatment=sasrec/v3:0.1 --salt exp-7]

Publishing copies a model artifact (``models/artifact.py``) into a hidden temporary directory beside
its final place, writes ``MANIFEST.json`` (a sha256 per file), validates the copy (the checks of
`validate_version`), then renames it into place. A rename within one directory is atomic on a
POSIX filesystem, so a reader sees either no version or a complete, validated one; a crash leaves
only a ``.tmp-*`` directory, which listing ignores and `Registry.clean` removes. Versions are
immutable: publishing an existing name/version is refused.

The job reads versions from the same paths (``uri`` in a ``model-updates`` announcement), so the
root must be a filesystem every TaskManager sees (local disk for one machine; NFS or a mounted
bucket for a cluster). ``file://`` URIs are accepted; object-store URIs are refused with a clear
error because they have no atomic rename.

This module is imported by Flink workers (validation before a live swap): numpy, json and
onnxruntime only, nothing at import time.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from urllib.parse import unquote, urlparse

import numpy as np

from models.artifact import (CONFIG_FILE, FIRST_ITEM_INDEX, INPUT_NAMES, MODEL_FILE, OUTPUT_NAME, STATE_OUTPUT,
                             ModelArtifact,
                             load_artifact)
from models.errors import ArtifactError, ModelError

log = logging.getLogger("models.registry")

MANIFEST_FILE = "MANIFEST.json"
TMP_PREFIX = ".tmp-"
ANNOUNCE_KEY = b"serving"
# The ONNX contract (models/artifact.py): every input (B, L|C) int64 with dynamic batch and length
# axes, one output (B, C) float32.
INPUT_DTYPE = "tensor(int64)"
OUTPUT_DTYPE = "tensor(float)"
_CHUNK = 1 << 20


class RegistryError(ModelError):
    """A registry operation was refused (bad root, existing version, failed validation)."""


def local_path(uri: str | Path) -> Path:
    """A filesystem path from a plain path or a ``file://`` URI; other schemes are refused."""
    text = str(uri)
    parsed = urlparse(text)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path) if parsed.scheme == "file" else text)
    raise RegistryError(f"{text}: unsupported URI scheme {parsed.scheme!r}; the registry needs a filesystem with "
                        "atomic rename (a local path, file://, or a mounted shared filesystem)")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_digest(files: dict[str, str]) -> str:
    """The version checksum: sha256 over the sorted ``<sha256>  <file>`` lines (sha256sum's format)."""
    text = "".join(f"{files[name]}  {name}\n" for name in sorted(files))
    return hashlib.sha256(text.encode()).hexdigest()


def artifact_files(directory: Path) -> dict[str, str]:
    """sha256 of every regular file of a version directory (recursively), manifest and checkpoints excluded."""
    out: dict[str, str] = {}
    for path in sorted(directory.rglob("*")):
        rel = path.relative_to(directory).as_posix()
        if not path.is_file() or rel == MANIFEST_FILE or rel.startswith("checkpoints/"):
            continue
        out[rel] = file_sha256(path)
    return out


@dataclass(frozen=True)
class Validated:
    """A version that passed every check: its artifact, checksum and canary scores."""

    artifact: ModelArtifact
    sha256: str
    canary_scores: np.ndarray  # (B, C) float32

    @property
    def version(self) -> str:
        return f"{self.artifact.name}/{self.artifact.version}"


def check_onnx_contract(session) -> None:
    """Input/output names, dtypes and dynamic axes of an ONNX Runtime session against the contract."""
    inputs = {i.name: i for i in session.get_inputs()}
    if set(inputs) != set(INPUT_NAMES):
        raise ArtifactError(f"ONNX inputs are {sorted(inputs)}, the contract needs {sorted(INPUT_NAMES)}")
    for name in INPUT_NAMES:
        spec = inputs[name]
        if spec.type != INPUT_DTYPE:
            raise ArtifactError(f"ONNX input {name!r} is {spec.type}, the contract needs {INPUT_DTYPE}")
        if len(spec.shape) != 2 or any(isinstance(d, int) for d in spec.shape):
            raise ArtifactError(f"ONNX input {name!r} has shape {spec.shape}; the contract needs 2 dynamic axes")
    outputs = session.get_outputs()
    names = [o.name for o in outputs]
    if names not in ([OUTPUT_NAME], [OUTPUT_NAME, STATE_OUTPUT]):
        raise ArtifactError(f"ONNX outputs are {names}, the contract needs [{OUTPUT_NAME!r}] "
                            f"or [{OUTPUT_NAME!r}, {STATE_OUTPUT!r}]")
    for o in outputs:
        if o.type != OUTPUT_DTYPE:
            raise ArtifactError(f"ONNX output {o.name!r} is {o.type}, the contract needs {OUTPUT_DTYPE}")


def canary_inputs(artifact: ModelArtifact) -> dict[str, np.ndarray]:
    """Two requests that touch the edges of the vocabulary: the first and last item index, OOV and
    padding, a short and a full-length history, an event index of every known type.

    The last index catches a vocabulary larger than the model's embedding table (ONNX Runtime
    fails on the out-of-range gather), which no shape check sees.
    """
    last = artifact.n_items - 1
    events = sorted(set(artifact.event_to_index.values()))
    length = artifact.max_len
    hist = np.zeros((2, length), dtype=np.int64)
    ev = np.zeros((2, length), dtype=np.int64)
    hist[0, -3:] = [FIRST_ITEM_INDEX, last, 1]
    ev[0, -3:] = [events[i % len(events)] for i in range(3)]
    hist[1, :] = np.resize(np.array([last, FIRST_ITEM_INDEX, 1], dtype=np.int64), length)
    ev[1, :] = np.resize(np.array(events, dtype=np.int64), length)
    cands = np.array([[FIRST_ITEM_INDEX, last, 1, FIRST_ITEM_INDEX + 1 if last > FIRST_ITEM_INDEX else last],
                      [last, 1, FIRST_ITEM_INDEX, last]], dtype=np.int64)
    return {"hist_items": hist, "hist_events": ev, "candidates": cands}


def run_canary(session, artifact: ModelArtifact) -> np.ndarray:
    """Score the canary batch; finite scores of shape (B, C) or ArtifactError."""
    inputs = canary_inputs(artifact)
    try:
        scores = session.run([OUTPUT_NAME], inputs)[0]
    except Exception as exc:  # ORT's pybind error types; the reason is in the message
        raise ArtifactError(f"canary batch failed to score: {exc}") from exc
    expected = inputs["candidates"].shape
    if scores.shape != expected:
        raise ArtifactError(f"canary scores have shape {scores.shape}, expected {expected}")
    if scores.dtype != np.float32:
        raise ArtifactError(f"canary scores are {scores.dtype}, expected float32")
    if not np.isfinite(scores).all():
        raise ArtifactError(f"canary scores are not finite ({int((~np.isfinite(scores)).sum())} of {scores.size})")
    return scores


def validate_version(directory: str | Path, expected_sha256: str | None = None, session=None) -> Validated:
    """Every check a version must pass before it is published or served.

    Manifest and file checksums (and ``expected_sha256`` when an announcement names one), the
    artifact's own consistency (vocab, config), the ONNX contract, and a canary batch with finite
    scores of the right shape. `session`: an ONNX Runtime session already built on the model file
    (the job passes the one it will serve); by default a CPU session is built here.
    """
    root = local_path(directory)
    if not root.is_dir():
        raise ArtifactError(f"model version not found: {root}")
    manifest_path = root / MANIFEST_FILE
    files = artifact_files(root)
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            recorded, digest = dict(manifest["files"]), str(manifest["sha256"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"{manifest_path}: unreadable manifest ({exc})") from exc
        changed = sorted(n for n in set(recorded) | set(files) if recorded.get(n) != files.get(n))
        if changed:
            raise ArtifactError(f"{root}: files differ from {MANIFEST_FILE}: {changed}")
        if manifest_digest(recorded) != digest:
            raise ArtifactError(f"{manifest_path}: sha256 does not match its file list")
    else:
        digest = manifest_digest(files)
    if expected_sha256 is not None and expected_sha256 != digest:
        raise ArtifactError(f"{root}: sha256 is {digest}, the announcement says {expected_sha256}")
    artifact = load_artifact(root)
    if session is None:
        import onnxruntime as ort

        try:
            session = ort.InferenceSession(str(root / MODEL_FILE), providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT's pybind error types; a truncated or foreign file lands here
            raise ArtifactError(f"cannot load {root / MODEL_FILE}: {exc}") from exc
    check_onnx_contract(session)
    scores = run_canary(session, artifact)
    return Validated(artifact=artifact, sha256=digest, canary_scores=scores)


@dataclass(frozen=True)
class Published:
    name: str
    version: str
    path: Path
    sha256: str

    @property
    def uri(self) -> str:
        return self.path.resolve().as_uri()

    def announcement(self) -> dict:
        """The ``model-updates`` record that makes the job serve this version to all users."""
        return {"name": self.name, "version": self.version, "uri": self.uri, "sha256": self.sha256}


class Registry:
    """``<root>/<name>/<version>/`` directories of validated, immutable model versions."""

    def __init__(self, root: str | Path) -> None:
        self.root = local_path(root)

    def path(self, name: str, version: str) -> Path:
        for part, what in ((name, "name"), (version, "version")):
            if not part or part.startswith(".") or "/" in part or "\\" in part or part != part.strip():
                raise RegistryError(f"invalid model {what} {part!r}: a non-empty path segment not starting with '.'")
        return self.root / name / version

    def publish(self, source: str | Path, name: str | None = None, version: str | None = None) -> Published:
        """Copy, checksum, validate and atomically rename `source` into the registry.

        Name and version default to the artifact's own (config.json); when given they are written
        into the published copy's config, so the version serves under the name it is published as.
        """
        src = local_path(source)
        artifact = load_artifact(src)  # fails early, before anything is written
        name, version = name or artifact.name, version or artifact.version
        final = self.path(name, version)
        if final.exists():
            raise RegistryError(f"{final} exists; versions are immutable (publish under a new version)")
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f"{TMP_PREFIX}{version}-{uuid.uuid4().hex[:8]}"
        try:
            shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("checkpoints", MANIFEST_FILE, "__pycache__"))
            config = json.loads((tmp / CONFIG_FILE).read_text(encoding="utf-8"))
            if (config.get("name"), config.get("version")) != (name, version):
                config.update(name=name, version=version)
                (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
            files = artifact_files(tmp)
            digest = manifest_digest(files)
            (tmp / MANIFEST_FILE).write_text(json.dumps(
                {"name": name, "version": version, "sha256": digest, "files": files,
                 "published_at": int(time.time())}, indent=2) + "\n", encoding="utf-8")
            validate_version(tmp, expected_sha256=digest)
            _fsync_tree(tmp)
            # Atomic on POSIX; fails (never merges) if another publisher won the race meanwhile.
            os.rename(tmp, final)
            _fsync_dir(final.parent)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("published %s/%s at %s (sha256 %s)", name, version, final, digest)
        return Published(name, version, final, digest)

    def versions(self) -> list[str]:
        """``name/version`` of every published version (temporary directories excluded)."""
        if not self.root.is_dir():
            return []
        return sorted(f"{n.name}/{v.name}" for n in self.root.iterdir() if n.is_dir() and not n.name.startswith(".")
                      for v in n.iterdir() if v.is_dir() and not v.name.startswith(".")
                      and (v / MANIFEST_FILE).is_file())

    def get(self, name: str, version: str) -> Published:
        path = self.path(name, version)
        try:
            manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{name}/{version} is not published in {self.root}: {exc}") from exc
        return Published(name, version, path, str(manifest["sha256"]))

    def resolve_arms(self, arms: dict[str, dict]) -> dict[str, dict]:
        """`{arm: {"model": NAME/VERSION, "share"}}` with each published version's `uri` and `sha256`
        added, so the announcement is self-contained (the job needs no earlier one to find the files)."""
        out = {}
        for arm, spec in arms.items():
            name, _, version = spec["model"].partition("/")
            published = self.get(name, version)
            out[arm] = {**spec, "uri": published.uri, "sha256": published.sha256}
        return out

    def clean(self) -> list[Path]:
        """Remove what interrupted publishes left behind; returns the removed paths."""
        removed = [p for p in self.root.glob(f"*/{TMP_PREFIX}*") if p.is_dir()] if self.root.is_dir() else []
        for p in removed:
            shutil.rmtree(p)
        return removed


def _fsync_tree(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(root)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def parse_arms(text: str) -> dict[str, dict]:
    """``control=sasrec/v2:0.9,treatment=sasrec/v3:0.1`` -> the ``arms`` object of an announcement."""
    arms: dict[str, dict] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            arm, rest = part.split("=", 1)
            model, share = rest.rsplit(":", 1)
            arms[arm.strip()] = {"model": model.strip(), "share": float(share)}
        except ValueError as exc:
            raise RegistryError(f"--arms: {part!r} is not ARM=NAME/VERSION:SHARE") from exc
    return arms


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m models.registry", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("publish", help="validate a model artifact directory and publish it atomically")
    p.add_argument("source")
    p.add_argument("--root", required=True)
    p.add_argument("--name")
    p.add_argument("--version")
    p = sub.add_parser("list", help="published versions")
    p.add_argument("--root", required=True)
    p = sub.add_parser("validate", help="run every publish check on a directory")
    p.add_argument("directory")
    p = sub.add_parser("announce", help="send a model-updates record: serve a version, optionally as A/B arms")
    p.add_argument("model", help="NAME/VERSION published in --root")
    p.add_argument("--root", required=True)
    p.add_argument("--bootstrap-servers", required=True)
    p.add_argument("--topic", default="model-updates")
    p.add_argument("--arms", help="ARM=NAME/VERSION:SHARE,... (shares sum to 1); default: all traffic to MODEL")
    p.add_argument("--salt", help="salt of the user -> arm hash (a new salt reshuffles users)")
    args = parser.parse_args(argv)
    try:
        if args.command == "publish":
            print(json.dumps(Registry(args.root).publish(args.source, args.name, args.version).announcement()))
        elif args.command == "list":
            print("\n".join(Registry(args.root).versions()))
        elif args.command == "validate":
            v = validate_version(args.directory)
            print(json.dumps({"version": v.version, "sha256": v.sha256}))
        else:
            name, _, version = args.model.partition("/")
            record = Registry(args.root).get(name, version).announcement()
            if args.arms:
                record["arms"] = Registry(args.root).resolve_arms(parse_arms(args.arms))
            if args.salt:
                record["salt"] = args.salt
            from kafka import KafkaProducer

            producer = KafkaProducer(bootstrap_servers=args.bootstrap_servers)
            # One key for every announcement: they land in one partition, so every instance applies them in order.
            producer.send(args.topic, key=ANNOUNCE_KEY, value=json.dumps(record).encode()).get(timeout=30)
            producer.close()
            print(json.dumps(record))
    except ModelError as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
