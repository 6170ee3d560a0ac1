import pytest

from jobs.config import JobConfig, load_flink_conf
from udfs.errors import ConfigError


def test_defaults_are_valid():
    cfg = JobConfig()
    assert cfg.delivery_guarantee == "AT_LEAST_ONCE" and cfg.parallelism == 1
    assert cfg.providers[-1] == "CPUExecutionProvider"


def test_precedence_flag_over_env_over_default():
    env = {"RERANK_PARALLELISM": "2", "RERANK_OUTPUT_TOPIC": "from-env"}
    cfg = JobConfig.from_args(["--output-topic", "from-flag"], environ=env)
    assert cfg.output_topic == "from-flag" and cfg.parallelism == 2


@pytest.mark.parametrize("kw, msg", [
    ({"parallelism": 0}, "parallelism must be >= 1"),
    ({"delivery_guarantee": "MAYBE"}, "delivery_guarantee"),
    ({"output_topic": "user-events"}, "distinct"),
    ({"delivery_guarantee": "EXACTLY_ONCE", "checkpoint_interval_ms": 0}, "EXACTLY_ONCE"),
    ({"startup_mode": "middle"}, "startup_mode"),
])
def test_invalid_values_are_refused(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        JobConfig(**kw)


def test_env_integer_type_error_is_clear():
    with pytest.raises(ConfigError, match="RERANK_PARALLELISM must be an integer"):
        JobConfig.from_env({"RERANK_PARALLELISM": "two"})


def test_flink_conf_is_flat_and_keeps_loopback(tmp_path):
    flat = load_flink_conf(JobConfig().flink_conf)
    assert flat["python.execution-mode"] == "thread"
    assert flat["rest.bind-address"] == "127.0.0.1"
    nested = tmp_path / "c.yaml"
    nested.write_text("a:\n  b: 1\n  c: true\n")
    assert load_flink_conf(nested) == {"a.b": "1", "a.c": "true"}
    with pytest.raises(ConfigError):
        load_flink_conf(tmp_path / "missing.yaml")


# -- Kafka client pass-through (TLS, SASL): --kafka-property / --kafka-properties-file --------------

JAAS = ('org.apache.kafka.common.security.scram.ScramLoginModule required '
        'username="svc-rerank" password="it\'s;secret=1";')


def test_kafka_properties_from_file_and_repeated_flags(tmp_path):
    props_file = tmp_path / "client.properties"
    props_file.write_text("# TLS\nsecurity.protocol=SASL_SSL\n\nssl.truststore.location = /etc/kafka/ca.jks\n"
                          f"sasl.jaas.config={JAAS}\n! old style comment\nsasl.mechanism: SCRAM-SHA-512\n")
    cfg = JobConfig.from_args(["--kafka-properties-file", str(props_file),
                               "--kafka-property", "sasl.mechanism=SCRAM-SHA-256",
                               "--kafka-property", "properties.request.timeout.ms=60000"], environ={})
    assert cfg.kafka_properties == {
        "security.protocol": "SASL_SSL", "ssl.truststore.location": "/etc/kafka/ca.jks",
        "sasl.jaas.config": JAAS, "sasl.mechanism": "SCRAM-SHA-256",  # the flag wins over the file
        "request.timeout.ms": "60000"}


def test_kafka_properties_from_env_one_per_line():
    cfg = JobConfig.from_env({"RERANK_KAFKA_PROPERTY": "security.protocol=SSL\nssl.endpoint.identification.algorithm="})
    assert cfg.kafka_properties == {"security.protocol": "SSL", "ssl.endpoint.identification.algorithm": ""}


@pytest.mark.parametrize("line, msg", [
    ("bootstrap.servers=elsewhere:9092", "use --bootstrap-servers"),
    ("properties.group.id=other", "use --group-id"),
    ("linger.ms=0", "use --sink-linger-ms"),
    ("no separator here", "expected KEY=VALUE"),
    ("=value", "expected KEY=VALUE"),
])
def test_kafka_properties_refuse_job_owned_keys_and_malformed_lines(line, msg):
    with pytest.raises(ConfigError, match=msg):
        JobConfig(kafka_property=line)


def test_kafka_properties_file_missing_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="kafka_properties_file"):
        JobConfig(kafka_properties_file=str(tmp_path / "absent.properties"))


def test_event_types_are_an_ordered_list_of_distinct_names():
    from jobs.config import JobConfig
    from udfs.errors import ConfigError

    cfg = JobConfig(event_types="view, click,cart,purchase,rate,wishlist")
    assert cfg.limits.event_types == ("view", "click", "cart", "purchase", "rate", "wishlist")
    for bad in ("", "view,view", "view,forget", "a\tb", ",".join(f"e{i}" for i in range(256))):
        with pytest.raises(ConfigError, match="event_types"):
            JobConfig(event_types=bad)
