"""The soak's pure parts: flatness slopes and the TTL-eviction verdict (no JVM, no broker)."""
import pytest

from bench.soak import markdown, parse_args, slope_per_min, verdicts


def _sample(t_s, state, rss=700.0, lag=10):
    return {"t_s": t_s, "phase": "x", "sent": 1, "answered": 1, "latency_ms": {"p50": 50.0, "p99": 90.0},
            "lag_records": lag, "rss_mb": {"taskmanager_jvm": rss, "python_workers": 0}, "state_bytes": state}


def test_slope_per_minute_of_a_line_and_of_too_few_points():
    assert slope_per_min([0, 60, 120, 180], [1.0, 3.0, 5.0, 7.0]) == pytest.approx(2.0)
    assert slope_per_min([0, 60, 120], [5.0, None, 5.0]) is None  # two points with a value
    assert slope_per_min([0, 30, 60, 90], [4.0, 4.0, 4.0, 4.0]) == 0.0


def test_state_that_falls_after_quiet_plus_ttl_counts_as_evicted():
    # The big cohort goes quiet at 100 s; TTL 50 s, checkpoints every 5 s: judged from 165 s on.
    states = {0: 1000, 50: 5000, 100: 9000, 150: 9500, 170: 2000, 200: 2100}
    v = verdicts([_sample(t, s) for t, s in states.items()], quiet_at_s=100, ttl_s=50, ckpt_s=5)
    assert v["ttl_evicted"] is True
    assert v["state_bytes_peak_before_quiet"] == 9000 and v["state_bytes_min_after_ttl"] == 2000
    assert v["state_fell_pct"] == pytest.approx(77.8)


def test_state_that_keeps_growing_is_not_evicted_and_a_short_run_says_so():
    grows = verdicts([_sample(t, 1000 + 10 * t) for t in range(0, 300, 10)], quiet_at_s=100, ttl_s=50, ckpt_s=5)
    assert grows["ttl_evicted"] is False
    assert grows["state_bytes_per_min_last_half"] == pytest.approx(600.0)
    short = verdicts([_sample(t, 1000) for t in range(0, 120, 10)], quiet_at_s=100, ttl_s=50, ckpt_s=5)
    assert short["ttl_evicted"] is None


def test_markdown_reports_totals_and_verdicts():
    args = parse_args(["--minutes", "1", "--state-ttl-ms", "30000"])
    samples = [_sample(t, 1000 - t) for t in range(0, 60, 10)]
    result = {"settings": {**vars(args), "model": "sasrec/v3"}, "quiet_at_s": 30.0,
              "totals": {"sent": 10, "answered": 10, "duplicates": 0, "send_failures": 0},
              "verdicts": verdicts(samples, 30.0, 30.0, 10.0), "samples": samples}
    md = markdown(result)
    assert "sent 10, answered 10" in md and "| 50 | x | 1 | 50.0 / 90.0 | 10 |" in md


@pytest.mark.integration
def test_soak_smoke_run(tmp_path):
    """Half a minute of the real soak (minicluster job, local broker, open-loop sender), so
    `make soak` cannot rot: the bookkeeping is asserted, not the numbers."""
    from bench import soak

    result = soak.main(["--minutes", "0.5", "--rate", "10", "--users", "30", "--active-users", "5",
                        "--state-ttl-ms", "5000", "--checkpoint-interval-ms", "1000", "--sample-s", "5",
                        "--candidates", "20", "--out", str(tmp_path)])
    totals = result["totals"]
    assert totals["sent"] == 300 and totals["answered"] == totals["sent"] and totals["send_failures"] == 0
    samples = result["samples"]
    assert len(samples) >= 4 and {s["phase"] for s in samples} == {"big cohort", "small cohort"}
    assert any(s["state_bytes"] for s in samples), "no checkpoint statistics from the REST API"
    assert all(s["rss_mb"].get("taskmanager_jvm", 0) > 0 for s in samples)
    assert all(s["lag_records"] is not None and s["lag_records"] >= 0 for s in samples[1:])
    for name in ("soak.json", "soak.md", "soak.png"):
        assert (tmp_path / name).is_file(), name
