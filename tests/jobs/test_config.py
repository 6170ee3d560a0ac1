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
