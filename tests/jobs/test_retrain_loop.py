"""jobs/retrain_loop.py without a broker: the trainer's command line and the settings' checks."""
from pathlib import Path

import pytest

from jobs.retrain_loop import RetrainSettings, train_command


def test_command_reads_the_old_log_and_the_topic_since_a_time():
    cmd = train_command("b:9092", "user-events", Path("models/x/v1"), Path("/tmp/out/x/v2"), "v2", RetrainSettings(),
                        [Path("before.parquet")], since_ms=123)
    joined = " ".join(cmd)
    assert "-m models.train --events before.parquet --bootstrap-servers b:9092 --topic user-events --from-ts 123" in joined
    assert "--init-from models/x/v1" in joined and "--version v2" in joined and "--no-eval" in joined


def test_command_without_files_reads_the_whole_topic():
    cmd = train_command("b:9092", "t", Path("m"), Path("o"), "v", RetrainSettings(epochs=2))
    assert "--events" not in cmd and "--from-ts" not in cmd and cmd[cmd.index("--epochs") + 1] == "2"


def test_control_command_reads_the_files_alone():
    cmd = train_command(None, "user-events", Path("m"), Path("o"), "v-control", RetrainSettings(),
                        [Path("before.parquet")], since_ms=123)
    assert "--events" in cmd and "--bootstrap-servers" not in cmd and "--topic" not in cmd and "--from-ts" not in cmd


def test_nothing_to_train_on_is_refused():
    with pytest.raises(ValueError, match="nothing to train on"):
        train_command(None, "t", Path("m"), Path("o"), "v", RetrainSettings())


@pytest.mark.parametrize("kw", [{"epochs": 0}, {"lr": 0.0}, {"new_share": 1.0}, {"new_share": 0.0}])
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError):
        RetrainSettings(**kw)
