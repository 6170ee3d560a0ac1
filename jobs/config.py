"""The job's settings in one typed, validated object.

Every field has a default, an environment variable (`RERANK_<FIELD>`) and a CLI flag
(`--field-name`); precedence is flag > environment > default. Flink runtime settings (execution
mode, bundle sizes, buffer timeout, state backend) live in `flink-conf/config.yaml`.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

from udfs.errors import ConfigError
from udfs.trending import DEFAULT_HALF_LIFE_MS, parse_event_weights

REPO_ROOT = Path(__file__).resolve().parent.parent
GUARANTEES = ("AT_LEAST_ONCE", "EXACTLY_ONCE")
STARTUP_MODES = ("group-offsets", "earliest-offset", "latest-offset")
SCORING_PATHS = ("keyed", "pandas")


def _default_python_path() -> str:
    import site

    return ":".join(site.getsitepackages())


def _doc(text: str, repeatable: bool = False, **kw: Any) -> Any:
    return field(metadata={"help": text, "repeatable": repeatable}, **kw)


# Kafka client properties the job sets itself from its own fields: one place for each setting.
RESERVED_KAFKA_PROPERTIES = {
    "bootstrap.servers": "--bootstrap-servers", "group.id": "--group-id",
    "auto.offset.reset": "--startup-mode", "fetch.max.wait.ms": "--fetch-max-wait-ms",
    "linger.ms": "--sink-linger-ms", "transactional.id": "--delivery-guarantee",
}


def parse_kafka_properties(lines: Sequence[str], source: str) -> dict[str, str]:
    """`KEY=VALUE` lines (Java-properties style: '#'/'!' comments, blanks skipped; the value is
    everything after the first '=' or ':', kept verbatim apart from surrounding whitespace) -> dict.

    Only the simple form is read (no line continuations or escapes): what TLS and SASL settings need.
    A key the job sets from its own flags (RESERVED_KAFKA_PROPERTIES) is refused, naming that flag.
    """
    props: dict[str, str] = {}
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        cut = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
        key = line[:cut].strip() if cut >= 0 else ""
        if not key:
            raise ConfigError(f"{source} line {n}: expected KEY=VALUE, got {line[:60]!r}")
        key = key.removeprefix("properties.")
        if key in RESERVED_KAFKA_PROPERTIES:
            raise ConfigError(f"{source} line {n}: Kafka property {key!r} is set by the job; "
                              f"use {RESERVED_KAFKA_PROPERTIES[key]}")
        props[key] = line[cut + 1:].strip()
    return props


@dataclass(frozen=True)
class JobConfig:
    bootstrap_servers: str = _doc("Kafka bootstrap servers, host:port[,host:port]", default="127.0.0.1:9092")
    events_topic: str = _doc("topic of user behavior events", default="user-events")
    requests_topic: str = _doc("topic of ranking requests", default="rank-requests")
    output_topic: str = _doc("topic the ranked lists are written to", default="ranked-lists")
    dead_letter_topic: str = _doc("topic of records that could not be processed", default="dead-letters")
    model_updates_topic: str = _doc("control topic announcing model versions and A/B splits (udfs/control.py); "
                                    "broadcast to every scoring instance", default="model-updates")
    embeddings_topic: str = _doc("compacted topic of item text embeddings, keyed by item_id (udfs/embeddings.py; "
                                 "written by jobs.item_embed_job), broadcast to every scoring instance: new items "
                                 "are scored from their text, shown items get reasons; '' = none",
                                 default="item-embeddings")
    trends_topic: str = _doc("compacted topic of decayed event counts per item, keyed by item_id (udfs/trending.py; "
                             "written by jobs.trending_job), broadcast to every scoring instance: scores blend "
                             "model and trend by the user's history (the model directory's blend.json), a user "
                             "with no history gets the trending list; '' = none", default="item-trends")
    group_id: str = _doc("Kafka consumer group (offsets are committed on checkpoints)", default="rerank-job")
    startup_mode: str = _doc(f"where to start reading: {'|'.join(STARTUP_MODES)}", default="group-offsets")
    fetch_max_wait_ms: int = _doc("longest a source fetch waits for data; some brokers (Tansu) always wait it out, "
                                  "so it bounds end-to-end latency", default=20)
    sink_linger_ms: int = _doc("Kafka producer linger.ms of the output sinks: batching output records cuts broker "
                               "requests (the broker's CPU is part of the request path's budget); 5 is the Kafka 4 "
                               "producer default", default=5)
    model_dir: str = _doc("model version directory (model.onnx, vocab.json, config.json)",
                          default=str(REPO_ROOT / "models" / "sasrec" / "v4"))
    parallelism: int = _doc("job parallelism", default=1)
    delivery_guarantee: str = _doc(f"Kafka sink guarantee: {'|'.join(GUARANTEES)}", default="AT_LEAST_ONCE")
    checkpoint_interval_ms: int = _doc("checkpoint interval in ms (0 disables checkpoints)", default=10_000)
    scoring: str = _doc("request path: 'keyed' scores inside the keyed operator (thread mode, lowest latency); "
                        "'pandas' scores in a vectorized pandas UDF (process mode, large Arrow batches, for "
                        "bulk re-scoring)", default="keyed")
    request_hold_ms: int = _doc("longest a request waits for events of its user logged before it but not yet "
                                "consumed. keyed: it is answered as soon as the events' watermark passes its "
                                "timestamp, at the latest after this; pandas: it always waits this long; 0 answers "
                                "at once", default=20)
    source_idle_timeout_ms: int = _doc("a source partition with no records for this long stops holding the watermark "
                                       "back (keyed path). 0 (default) never: a quiet partition then holds requests "
                                       "for up to request_hold_ms. > 0 answers sooner at low load, but a request can "
                                       "be released before events of its user that are already fetched from an idle "
                                       "partition reach the operator (measured: bench/results/latest.json)", default=0)
    scoring_timeout_ms: int = _doc("a model call that takes longer is abandoned and the request answered with a "
                                   "flagged fallback list (0: call inline, no limit)", default=1000)
    pseudonymize_key: str = _doc("pseudonymize user ids at ingress with a keyed HMAC: 'file:/path' or 'env:NAME' "
                                 "(where the TaskManagers read the key; never the key itself). Raw ids then reach no "
                                 "state, output, dead letter, log or metric. '' = off", default="")
    model_int8: int = _doc("1 serves the artifact's int8 model (model.int8.onnx)", default=0)
    event_types: str = _doc("comma-separated event names accepted on user-events, in a fixed order (stored "
                            "histories hold positions in it: only append); the model scores those its "
                            "vocabulary knows, others count in history_len and as padding",
                            default="view,click,cart,purchase,rate")
    explain: int = _doc("1: every shown item carries a reason (new / because you watched X / trending / picked "
                        "for you) from the item embeddings; 0: none", default=1)
    explain_min_similarity: float = _doc("'because you watched X' only when the shown item's cosine similarity to "
                                         "X is at least this", default=0.5)
    diversity_lambda: float = _doc("MMR over the item embeddings: lambda * relevance - (1 - lambda) * similarity "
                                   "to the items above; 1 = the model's order (results/text/diversity.json)",
                                   default=1.0)
    max_candidates: int = _doc("requests with more candidates go to dead-letters", default=1000)
    max_id_bytes: int = _doc("user, item and request ids longer than this (UTF-8 bytes) go to dead-letters",
                             default=256)
    max_value_bytes: int = _doc("input records larger than this go to dead-letters before they are parsed",
                                default=262144)
    decay_half_life_ms: int = _doc("half-life of the per-user decayed event counters", default=7 * 24 * 3600 * 1000)
    state_ttl_ms: int = _doc("per-user state is evicted after this long without an update",
                             default=30 * 24 * 3600 * 1000)
    onnx_providers: str = _doc("ONNX Runtime execution providers in order of preference",
                               default="CUDAExecutionProvider,CPUExecutionProvider")
    onnx_threads: int = _doc("ONNX Runtime intra-op threads per scoring worker", default=1)
    flink_conf: str = _doc("Flink configuration file (YAML) applied to the job",
                           default=str(REPO_ROOT / "flink-conf" / "config.yaml"))
    jars: str = _doc("';'-separated connector jars put on pipeline.jars ('' if already on the classpath)",
                     default=f"{REPO_ROOT / 'build' / 'jars' / 'flink-connector-kafka.jar'};"
                             f"{REPO_ROOT / 'build' / 'jars' / 'kafka-clients.jar'}")
    python_executable: str = _doc("Python interpreter of the Flink Python workers", default=sys.executable)
    python_path: str = _doc("extra PYTHONPATH of the Python workers (thread mode needs the venv's site-packages)",
                            default=_default_python_path())
    job_name: str = _doc("Flink job name", default="rerank")
    kafka_property: str = _doc("extra Kafka client property KEY=VALUE for every source and sink of the job (TLS, "
                               "SASL, timeouts), put on the tables as 'properties.KEY'; repeat the flag for more "
                               "(in the environment variable: one per line). Wins over kafka_properties_file",
                               default="", repeatable=True)
    kafka_properties_file: str = _doc("a Java-properties file (KEY=VALUE lines, '#' comments) of extra Kafka client "
                                      "properties for every source and sink: keeps secrets such as "
                                      "sasl.jaas.config off the command line", default="")

    def __post_init__(self) -> None:
        problems = []
        if not self.bootstrap_servers.strip():
            problems.append("bootstrap_servers is empty")
        topics = [self.events_topic, self.requests_topic, self.output_topic, self.dead_letter_topic,
                  self.model_updates_topic] + [t for t in (self.embeddings_topic, self.trends_topic) if t]
        if any(not t.strip() for t in topics) or len(set(topics)) != len(topics):
            problems.append(f"topics must be non-empty and distinct, got {topics}")
        if self.startup_mode not in STARTUP_MODES:
            problems.append(f"startup_mode must be one of {STARTUP_MODES}, got {self.startup_mode!r}")
        if self.delivery_guarantee not in GUARANTEES:
            problems.append(f"delivery_guarantee must be one of {GUARANTEES}, got {self.delivery_guarantee!r}")
        for name in ("parallelism", "fetch_max_wait_ms", "max_candidates", "max_id_bytes", "max_value_bytes", "decay_half_life_ms", "state_ttl_ms", "onnx_threads"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if min(self.request_hold_ms, self.source_idle_timeout_ms, self.sink_linger_ms, self.scoring_timeout_ms) < 0:
            problems.append("request_hold_ms, source_idle_timeout_ms, sink_linger_ms and scoring_timeout_ms must be >= 0")
        if self.scoring not in SCORING_PATHS:
            problems.append(f"scoring must be one of {SCORING_PATHS}, got {self.scoring!r}")
        if self.explain not in (0, 1):
            problems.append(f"explain must be 0 or 1, got {self.explain}")
        if not 0.0 <= self.diversity_lambda <= 1.0:
            problems.append(f"diversity_lambda must be in [0, 1], got {self.diversity_lambda}")
        if not -1.0 <= self.explain_min_similarity <= 1.0:
            problems.append(f"explain_min_similarity must be in [-1, 1], got {self.explain_min_similarity}")
        if self.model_int8 not in (0, 1):
            problems.append(f"model_int8 must be 0 or 1, got {self.model_int8}")
        if self.checkpoint_interval_ms < 0:
            problems.append("checkpoint_interval_ms must be >= 0")
        if self.delivery_guarantee == "EXACTLY_ONCE" and self.checkpoint_interval_ms == 0:
            problems.append("EXACTLY_ONCE commits on checkpoints: set checkpoint_interval_ms > 0")
        names = self.event_type_names
        if not names or len(names) > 255 or len(set(names)) != len(names) or "forget" in names \
                or any(not n.isprintable() or len(n.encode()) > 64 for n in names):
            problems.append(f"event_types must be 1-255 distinct printable names of at most 64 bytes, not 'forget': "
                            f"{self.event_types!r}")
        if self.pseudonymize_key:
            if not self.pseudonymize_key.startswith(("file:", "env:")):
                problems.append(f"pseudonymize_key must be file:PATH or env:NAME, got {self.pseudonymize_key!r}")
            if self.scoring != "keyed":
                problems.append("pseudonymize_key needs scoring=keyed")
        if not self.providers:
            problems.append("onnx_providers is empty")
        try:
            self.kafka_properties
        except ConfigError as exc:
            problems.append(str(exc))
        if problems:
            raise ConfigError("invalid job config: " + "; ".join(problems))

    @property
    def limits(self) -> "Limits":
        from udfs.records import Limits

        return Limits(self.max_candidates, self.max_id_bytes, self.max_value_bytes, self.event_type_names)

    @property
    def presenting(self) -> "PresentSettings":
        from udfs.content import PresentSettings

        return PresentSettings(bool(self.explain), self.diversity_lambda, self.explain_min_similarity)

    @property
    def event_type_names(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in self.event_types.split(",") if n.strip())

    @property
    def providers(self) -> list[str]:
        return [p.strip() for p in self.onnx_providers.split(",") if p.strip()]

    @property
    def kafka_properties(self) -> dict[str, str]:
        """Extra Kafka client properties of every source and sink: the file's, then the flags' on top."""
        props: dict[str, str] = {}
        if self.kafka_properties_file:
            path = Path(self.kafka_properties_file)
            try:
                text = path.read_text()
            except OSError as exc:
                raise ConfigError(f"kafka_properties_file {path}: {exc.strerror or exc}") from None
            props.update(parse_kafka_properties(text.splitlines(), str(path)))
        props.update(parse_kafka_properties(self.kafka_property.splitlines(), "--kafka-property"))
        return props

    @property
    def jar_paths(self) -> list[str]:
        return [j.strip() for j in self.jars.split(";") if j.strip()]

    @property
    def uses_java_functions(self) -> bool:
        """Whether the job calls the project's Java functions (udfs/java/), so their jar ships with it."""
        return bool(self.pseudonymize_key)

    def replace(self, **changes: Any) -> "JobConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "JobConfig":
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = f"RERANK_{f.name.upper()}"
            if key in environ:
                values[f.name] = _coerce(f, environ[key], key)
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> "JobConfig":
        parser = argparse.ArgumentParser(description="Real-time personalized re-ranking job")
        for f in fields(cls):
            parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=None,
                                action="append" if f.metadata.get("repeatable") else "store",
                                help=f"{f.metadata['help']} (env RERANK_{f.name.upper()}, default {f.default!r})")
        args = parser.parse_args(argv)
        # A repeatable flag's values are kept one per line, the form its environment variable takes.
        values = {f.name: "\n".join(v) if isinstance(v := getattr(args, f.name), list) else v for f in fields(cls)}
        overrides = {f.name: _coerce(f, values[f.name], "--" + f.name.replace("_", "-"))
                     for f in fields(cls) if values[f.name] is not None}
        return cls.from_env(environ, **overrides)


def _coerce(f: dataclasses.Field, raw: str, source: str) -> Any:
    if f.type in ("int", int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{source} must be an integer, got {raw!r}") from None
    if f.type in ("float", float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{source} must be a number, got {raw!r}") from None
    return raw


# Settings of the cluster's own processes: addresses, ports, memory, reporters, JVM options.
CLUSTER_PROCESS_KEYS = ("rest.", "jobmanager.", "taskmanager.", "metrics.reporter.", "env.", "blob.")


def submitted_by_flink_client(environ: Mapping[str, str] | None = None) -> bool:
    """True when a Flink client (`flink run -py`) started this interpreter and provides its gateway.

    The job then leaves CLUSTER_PROCESS_KEYS of flink-conf/config.yaml to the cluster: in the job's
    configuration they would override the client's own (rest.address: 127.0.0.1 would redirect the
    submission meant for a remote JobManager). Run locally, they configure the minicluster.
    """
    return "PYFLINK_GATEWAY_PORT" in (os.environ if environ is None else environ)


def load_flink_conf(path: str | Path) -> dict[str, str]:
    """Flat `key: value` pairs of a Flink 2.x YAML config (nested maps are joined with dots)."""
    import yaml  # PyFlink's own dependency

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Flink config file not found: {path}")
    with path.open() as fh:
        doc = yaml.safe_load(fh) or {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at top level")
    flat: dict[str, str] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(node, list):
            flat[prefix] = ";".join(str(v) for v in node)
        elif isinstance(node, bool):
            flat[prefix] = "true" if node else "false"
        else:
            flat[prefix] = str(node)

    walk("", doc)
    return flat


@dataclass(frozen=True)
class ItemEmbedConfig(JobConfig):
    """Settings of the item-embedding job (jobs/item_embed_job.py): JobConfig's Kafka, runtime and
    Python fields (same flags and RERANK_* variables), plus its own topics and encoder below.
    The ranking fields (events/requests/output topics, model, scoring) are not used by it."""

    catalog_topic: str = _doc("topic of new or changed items (item-catalog contract, udfs/embeddings.py)",
                              default="item-catalog")
    encoder_dir: str = _doc("text encoder directory (model.onnx, tokenizer.json, encoder.json; built by "
                            "`python -m models.text_encoder`)",
                            default=str(REPO_ROOT / "data" / "text-encoder" / "all-MiniLM-L6-v2"))
    embed_batch_size: int = _doc("texts per ONNX Runtime call inside a UDF batch (sorted by length, so a call "
                                 "pads little; 32 measured best per CPU-second: results/text/throughput.json)",
                                 default=32)
    group_id: str = _doc("Kafka consumer group (offsets are committed on checkpoints)", default="item-embed-job")
    job_name: str = _doc("Flink job name", default="item-embed")
    onnx_threads: int = _doc("ONNX Runtime intra-op threads of the encoder", default=1)
    skip_unchanged: int = _doc("1: an item whose text this encoder already embedded is not embedded again "
                               "(keyed state per item); 0: every catalog record is embedded", default=1)
    state_ttl_ms: int = _doc("per-item state (what was last embedded) is evicted after this long without an "
                             "update; a re-announced item is then embedded again", default=365 * 24 * 3600 * 1000)

    def __post_init__(self) -> None:
        super().__post_init__()
        topics = [self.catalog_topic, self.embeddings_topic, self.dead_letter_topic]
        problems = []
        if any(not t.strip() for t in topics) or len(set(topics)) != len(topics):
            problems.append(f"catalog, embeddings and dead-letter topics must be non-empty and distinct, got {topics}")
        if self.embed_batch_size < 1:
            problems.append(f"embed_batch_size must be >= 1, got {self.embed_batch_size}")
        if self.skip_unchanged not in (0, 1):
            problems.append(f"skip_unchanged must be 0 or 1, got {self.skip_unchanged}")
        if problems:
            raise ConfigError("invalid item-embed config: " + "; ".join(problems))


FEEDBACK_TIMES = ("emitted_at", "ts")


@dataclass(frozen=True)
class FeedbackConfig(JobConfig):
    """Settings of the feedback job (jobs/feedback_job.py): JobConfig's Kafka and runtime fields (same
    flags and RERANK_* variables); it reads `--output-topic` (the ranked lists) and `--events-topic`."""

    samples_topic: str = _doc("topic the labelled training samples are written to", default="training-samples")
    feedback_window_ms: int = _doc("an action on a shown item counts if it happens within this long after the "
                                   "list was emitted", default=30 * 60 * 1000)
    feedback_lateness_ms: int = _doc("out-of-orderness allowed on list and action times (watermark delay)",
                                     default=5000)
    feedback_idle_timeout_ms: int = _doc("an input partition quiet for this long stops holding back the "
                                         "watermark (so unanswered impressions are written); 0 = never",
                                         default=60_000)
    feedback_time: str = _doc("a ranked list's impression time: 'emitted_at' (when the ranking job wrote it, its "
                              "wall clock) or 'ts' (the request's own timestamp, on the events' clock: use it "
                              "when events and requests carry event time, e.g. a replay of a historical log)",
                              default="emitted_at")
    click_events: str = _doc("comma-separated event names that count as a click on a shown item",
                             default="click,view,cart,purchase,rate")
    conversion_events: str = _doc("comma-separated event names that count as a conversion", default="cart,purchase")
    online_metrics_k: int = _doc("online metrics per arm and model version in the job's metrics (Prometheus "
                                 "flink_taskmanager_job_task_operator_feedback_arm_model_version_*): lists, CTR@k, "
                                 "NDCG@k and conversion of the shown lists, as jobs/online_eval.py feedback_metrics "
                                 "computes them from the samples, at this k; 0 = off", default=10)
    group_id: str = _doc("Kafka consumer group (offsets are committed on checkpoints)", default="rerank-feedback")
    job_name: str = _doc("Flink job name", default="rerank-feedback")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.feedback_window_ms < 1 or self.feedback_lateness_ms < 0 or self.feedback_idle_timeout_ms < 0:
            raise ConfigError("feedback_window_ms must be >= 1, feedback_lateness_ms and feedback_idle_timeout_ms >= 0")
        if self.online_metrics_k < 0:
            raise ConfigError(f"online_metrics_k must be >= 0 (0 = off), got {self.online_metrics_k}")
        if not [n for n in self.click_events.split(",") if n.strip()]:
            raise ConfigError("click_events is empty")
        if self.feedback_time not in FEEDBACK_TIMES:
            raise ConfigError(f"feedback_time must be one of {FEEDBACK_TIMES}, got {self.feedback_time!r}")
        if self.samples_topic in (self.events_topic, self.output_topic):
            raise ConfigError(f"samples_topic {self.samples_topic!r} must differ from the input topics")

    @property
    def uses_java_functions(self) -> bool:
        return super().uses_java_functions or self.online_metrics_k > 0


@dataclass(frozen=True)
class TrendConfig(JobConfig):
    """Settings of the trending job (jobs/trending_job.py): JobConfig's Kafka and runtime fields (same
    flags and RERANK_* variables); it reads `--events-topic` (and `--catalog-topic` when set) and
    writes `--trends-topic`. The ranking fields (requests/output topics, model, scoring) are not used."""

    trends_topic: str = _doc("compacted topic the decayed counts are written to, keyed by item_id or "
                             "'category:<name>' (udfs/trending.py; the ranking job reads it)", default="item-trends")
    catalog_topic: str = _doc("item-catalog topic (udfs/embeddings.py): each item's categories, so events also "
                              "count per category (scope 'category' records); '' = items only", default="")
    half_life_ms: int = _doc("half-life of the decayed counts; the ranking job's blend was tuned at its model's "
                             "blend.json half_life_ms (14 days for sasrec/cut2001)", default=DEFAULT_HALF_LIFE_MS)
    emit_interval_ms: int = _doc("a key's record is written at most once per this much event time (the events' "
                                 "record timestamps): the first event after a record schedules the next one this "
                                 "long after it, so a burst of events yields one record", default=60_000)
    event_weights: str = _doc("NAME=WEIGHT,... weight of an event type in the counts (e.g. 'cart=2,purchase=3'); "
                              "an unlisted type weighs 1, 0 leaves it out; '' = every event weighs 1, as the "
                              "offline protocol that tunes the blend counts (models/temporal.py)", default="")
    state_ttl_ms: int = _doc("per-item state (count, categories) and per-category counts are evicted after this "
                             "long without an update; at least 20 half-lives, so an evicted count has decayed "
                             "below 1e-6 of its value; an item's categories come back when the catalog "
                             "re-announces it", default=365 * 24 * 3600 * 1000)
    group_id: str = _doc("Kafka consumer group (offsets are committed on checkpoints)", default="trending-job")
    job_name: str = _doc("Flink job name", default="trending")

    def __post_init__(self) -> None:
        super().__post_init__()
        problems = []
        topics = [self.events_topic, self.trends_topic, self.dead_letter_topic] + \
            ([self.catalog_topic] if self.catalog_topic else [])
        if any(not t.strip() for t in topics) or len(set(topics)) != len(topics):
            problems.append(f"events, trends, dead-letter and catalog topics must be non-empty and distinct, "
                            f"got {topics}")
        if self.half_life_ms < 1 or self.emit_interval_ms < 1:
            problems.append(f"half_life_ms and emit_interval_ms must be >= 1, got {self.half_life_ms}, "
                            f"{self.emit_interval_ms}")
        elif self.state_ttl_ms < 20 * self.half_life_ms:
            problems.append(f"state_ttl_ms ({self.state_ttl_ms}) must be at least 20 half-lives "
                            f"({20 * self.half_life_ms}): eviction would drop counts that still matter")
        try:
            weights = self.weights
        except ValueError as exc:
            problems.append(str(exc))
        else:
            if not any(weights.values()):
                problems.append(f"event_weights {self.event_weights!r} leave every event type out")
        if problems:
            raise ConfigError("invalid trending config: " + "; ".join(problems))

    @property
    def weights(self) -> dict[str, float]:
        """The weight of each accepted event type (`event_weights` over `event_types`)."""
        return parse_event_weights(self.event_weights, self.event_type_names)
