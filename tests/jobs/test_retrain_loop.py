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


@pytest.mark.parametrize("kw", [{"epochs": 0}, {"lr": 0.0}, {"new_share": 1.0}, {"new_share": 0.0}])
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError):
        RetrainSettings(**kw)
