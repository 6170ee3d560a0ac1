"""The feedback job's pure parts: the SQL it runs, its config, and online metrics from its samples."""
from __future__ import annotations

import math

import pytest

from jobs.config import FeedbackConfig
from jobs.feedback_job import samples_query, sql_interval
from jobs.online_eval import feedback_metrics
from udfs.errors import ConfigError


def test_query_joins_on_user_item_and_the_window():
    q = samples_query(FeedbackConfig(feedback_window_ms=90_061_001, click_events="click, o'dd",
                                     conversion_events="purchase"))
    assert "LEFT JOIN actions" in q and "WITH ORDINALITY" in q
    assert "a.user_id = i.user_id AND a.item_id = s.item_id" in q
    assert "a.rt BETWEEN i.rt AND i.rt + INTERVAL '1 01:01:01.001' DAY TO SECOND(3)" in q
    assert "IN ('click', 'o''dd')" in q and "IN ('purchase')" in q  # names quoted for SQL


def test_intervals_and_config_validation():
    assert sql_interval(1_800_000) == "INTERVAL '0 00:30:00.000' DAY TO SECOND(3)"
    assert sql_interval(5) == "INTERVAL '0 00:00:00.005' DAY TO SECOND(3)"
    with pytest.raises(ConfigError, match="feedback_window_ms"):
        FeedbackConfig(feedback_window_ms=0)
    with pytest.raises(ConfigError, match="click_events"):
        FeedbackConfig(click_events=" , ")
    with pytest.raises(ConfigError, match="must differ"):
        FeedbackConfig(samples_topic="ranked-lists")
    with pytest.raises(ConfigError, match="feedback_time"):
        FeedbackConfig(feedback_time="now")


def test_impression_time_is_emitted_at_or_the_request_ts():
    assert "a.ts - i.emitted_at, i.emitted_at" in samples_query(FeedbackConfig())
    assert "a.ts - i.ts, i.ts" in samples_query(FeedbackConfig(feedback_time="ts"))


def sample(rid, pos, clicked=False, converted=False, arm="a", version="m/v1"):
    return {"request_id": rid, "position": pos, "clicked": clicked, "converted": converted, "arm": arm,
            "model_version": version}


def test_feedback_metrics_per_arm_and_version():
    samples = [sample("r1", 1), sample("r1", 2, clicked=True), sample("r1", 3),
               sample("r2", 1, clicked=True, converted=True), sample("r2", 2, clicked=True),
               sample("r3", 1), sample("r3", 2),
               sample("r4", 1, arm="b", version="m/v2"), sample("r4", 12, clicked=True, arm="b", version="m/v2")]
    m = feedback_metrics(samples, k=10)
    a = m["a (m/v1)"]
    assert a["lists"] == 3 and a["ctr@10"] == round(2 / 3, 4) and a["conversion_rate"] == round(1 / 3, 4)
    # r1: one click at position 2 -> (1/log2 3) / 1; r2: clicks at 1 and 2 -> ideal -> 1; r3: 0.
    assert a["ndcg@10"] == round((1 / math.log2(3) + 1.0) / 3, 4)
    b = m["b (m/v2)"]
    assert b["lists"] == 1 and b["ctr@10"] == 0.0 and b["ndcg@10"] == 0.0  # the click is below the top 10


def test_served_lists_without_samples_count_as_unclicked():
    samples = [sample("r1", 2, clicked=True)]
    shown = {"r1": ("a", "m/v1"), "r2": ("a", "m/v1"), "r3": ("b", "m/v2")}
    m = feedback_metrics(samples, k=10, shown=shown)
    assert m["a (m/v1)"]["lists"] == 2 and m["a (m/v1)"]["ctr@10"] == 0.5
    assert m["b (m/v2)"] == {"lists": 1, "ctr@10": 0.0, "ndcg@10": 0.0, "conversion_rate": 0.0}
    assert feedback_metrics(samples, k=10)["a (m/v1)"]["ctr@10"] == 1.0  # without it: only lists with samples
