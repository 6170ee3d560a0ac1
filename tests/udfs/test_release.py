from udfs.records import RankRequest
from udfs.release import PendingRequest, ready, split_due


def pending(log_ts, due):
    return PendingRequest(log_ts, due, RankRequest(f"r{log_ts}", "u", ("a",), None, log_ts))


def test_a_request_waits_until_the_watermark_reaches_its_timestamp():
    assert not ready(100, watermark=99)
    assert ready(100, watermark=100) and ready(100, watermark=5_000)
    assert not ready(100, watermark=-2**63)  # no watermark yet


def test_split_due_answers_by_watermark_or_by_cap_and_keeps_order():
    waiting = [pending(10, due=1_000), pending(20, due=50), pending(30, due=1_000)]
    now, later = split_due(waiting, watermark=15, now_ms=60)
    assert [p.log_ts for p in now] == [10, 20]  # 10: watermark passed; 20: its cap expired
    assert [p.log_ts for p in later] == [30]
    assert split_due(waiting, watermark=0, now_ms=0) == ([], waiting)
