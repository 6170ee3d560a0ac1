"""The feedback job's pure parts: the SQL it runs, its config, and online metrics from its samples."""
from __future__ import annotations

import math

import pytest

from jobs.config import FeedbackConfig
from jobs.feedback_job import list_rows_query, metrics_query, samples_query, shown_items_query, sql_interval
from jobs.online_eval import feedback_metrics
from udfs.errors import ConfigError


def test_query_joins_on_user_item_and_the_window():
    q = shown_items_query(FeedbackConfig(feedback_window_ms=90_061_001, click_events="click, o'dd",
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
    assert "a.ts - i.emitted_at AS latency_ms, i.emitted_at AS shown_at" in shown_items_query(FeedbackConfig())
    assert "a.ts - i.ts AS latency_ms, i.ts AS shown_at" in shown_items_query(FeedbackConfig(feedback_time="ts"))
    assert "FROM shown_items" in samples_query(FeedbackConfig()) and "JOIN" not in samples_query(FeedbackConfig())


def test_metrics_aggregate_each_list_once_from_its_own_row_and_the_matched_rows():
    rows = list_rows_query(FeedbackConfig(online_metrics_k=3))
    # One row per list from the impressions; from the join only matched rows (the null-padded ones
    # come behind the join's output watermark and could be dropped as late by the window).
    assert "FROM impressions\n        WHERE CARDINALITY(items) > 0\n        UNION ALL" in rows
    assert "FROM shown_items\n        WHERE event IS NOT NULL" in rows
    # Hits and their DCG gains at positions <= k only; the gain of position p is 1 / log2(p + 1).
    assert rows.count("CASE WHEN clicked AND `position` <= 3 THEN") == 2 and "1.0E0 / LOG2(`position` + 1)" in rows
    q = metrics_query(FeedbackConfig())
    assert "TABLE(TUMBLE(TABLE list_rows, DESCRIPTOR(shown_rt), INTERVAL '1' MINUTE))" in q
    assert "GROUP BY window_start, window_end, request_id, model_version, arm" in q
    assert "COUNT(DISTINCT hit)" in q and "SUM(DISTINCT gain)" in q  # a position counts once


def test_online_metrics_k_is_validated_and_ships_the_java_functions():
    assert FeedbackConfig().online_metrics_k == 10 and FeedbackConfig().uses_java_functions
    assert not FeedbackConfig(online_metrics_k=0).uses_java_functions
    with pytest.raises(ConfigError, match="online_metrics_k"):
        FeedbackConfig(online_metrics_k=-1)


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
