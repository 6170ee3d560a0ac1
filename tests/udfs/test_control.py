"""The model-updates contract: announcements, A/B arms and the user -> arm assignment."""
from __future__ import annotations

import collections
import json

import pytest
from hypothesis import given, settings, strategies as st

from udfs.control import DEFAULT_ARM, ModelRef, Serving, apply_announcement
from udfs.errors import InvalidRecord

SHA = "a" * 64
BASE = Serving.single(ModelRef("sasrec/v1", "/models/sasrec/v1"))


def announce(current: Serving = BASE, **fields) -> Serving:
    return apply_announcement(current, json.dumps(fields))


def test_an_announcement_takes_all_traffic_as_one_arm():
    s = announce(name="sasrec", version="v2", uri="file:///r/sasrec/v2", sha256=SHA)
    assert [(a.name, a.model, a.share) for a in s.arms] == [(DEFAULT_ARM, "sasrec/v2", 1.0)]
    assert s.models["sasrec/v2"] == ModelRef("sasrec/v2", "file:///r/sasrec/v2", SHA)
    assert "sasrec/v1" in s.models  # still known: a later split can name it without its uri
    assert Serving.from_json(s.to_json()) == s


def test_arms_split_known_and_new_versions_and_can_change_alone():
    s = announce(name="sasrec", version="v2", uri="/r/v2",
                 arms={"b": {"model": "sasrec/v2", "share": 0.3}, "a": {"model": "sasrec/v1", "share": 0.7}},
                 salt="exp-1")
    assert [(a.name, a.model) for a in s.arms] == [("a", "sasrec/v1"), ("b", "sasrec/v2")]
    assert s.active_models == ["sasrec/v1", "sasrec/v2"] and s.salt == "exp-1"
    again = apply_announcement(s, json.dumps({"arms": {"a": {"model": "sasrec/v1", "share": 0.5},
                                                       "b": {"model": "sasrec/v2", "share": 0.5}}}))
    assert [a.share for a in again.arms] == [0.5, 0.5] and again.salt == "exp-1"
    inline = apply_announcement(s, json.dumps({"arms": {"x": {"model": "other/v7", "uri": "/r/o7", "share": 1}}}))
    assert inline.models["other/v7"].uri == "/r/o7" and inline.active_models == ["other/v7"]


@pytest.mark.parametrize("payload, reason, words", [
    (b"{not json", "bad_json", "not JSON"),
    (b"[1, 2]", "not_object", "expected a JSON object"),
    (json.dumps({"name": "m", "version": "v", "uri": "/x", "extra": 1}), "unknown_field", "unknown fields ['extra']"),
    (json.dumps({"name": "m", "version": "v"}), "wrong_type", "'uri' must be a non-empty string"),
    (json.dumps({"salt": "s"}), "missing_field", "needs name, version and uri, or arms"),
    (json.dumps({"name": "m", "version": "../v", "uri": "/x"}), "wrong_type", "'version'"),
    (json.dumps({"name": "m", "version": "v", "uri": "/x", "sha256": "xyz"}), "wrong_type", "'sha256'"),
    (json.dumps({"arms": {"a": {"model": "sasrec/v1", "share": 0.6}, "b": {"model": "sasrec/v1", "share": 0.6}}}),
     "bad_share", "sum to 1.2"),
    (json.dumps({"arms": {"a": {"model": "sasrec/v1", "share": 0.9}}}), "bad_share", "sum to 0.9"),
    (json.dumps({"arms": {"a": {"model": "sasrec/v1", "share": -0.5}, "b": {"model": "sasrec/v1", "share": 1.5}}}),
     "bad_share", "in (0, 1]"),
    (json.dumps({"arms": {"a": {"model": "sasrec/v1", "share": "1"}}}), "bad_share", "share must be a number"),
    (json.dumps({"arms": {"a": {"model": "nope/v0", "share": 1}}}), "unknown_model", "never announced"),
    (json.dumps({"arms": {"a": {"model": "noslash", "share": 1}}}), "wrong_type", "is not NAME/VERSION"),
    (json.dumps({"arms": {}}), "wrong_type", "non-empty object"),
    (json.dumps({"arms": {"a b": {"model": "sasrec/v1", "share": 1}}}), "wrong_type", "arm name"),
    (json.dumps({"arms": {"a": {"model": "sasrec/v1", "share": 1, "weight": 2}}}), "unknown_field", "weight"),
])
def test_bad_announcements_are_refused_with_a_reason(payload, reason, words):
    with pytest.raises(InvalidRecord) as info:
        apply_announcement(BASE, payload)
    assert info.value.reason == reason and words in info.value.detail, info.value


def two_arms(share_a: float, salt: str = "s1") -> Serving:
    return announce(name="m", version="v2", uri="/r/v2", salt=salt,
                    arms={"a": {"model": "sasrec/v1", "share": share_a}, "b": {"model": "m/v2", "share": 1 - share_a}})


@pytest.mark.parametrize("share_a", [0.5, 0.9, 0.1, 1 / 3])
def test_shares_hold_within_two_points_over_10000_users_and_stay_per_user(share_a):
    s = two_arms(share_a)
    users = [f"user-{i}" for i in range(10_000)]
    counts = collections.Counter(s.assign(u).name for u in users)
    assert abs(counts["a"] / len(users) - share_a) <= 0.02, counts
    # Stable: the same user always lands in the same arm, also after a round trip through state.
    restored = Serving.from_json(s.to_json())
    assert all(s.assign(u) == restored.assign(u) for u in users[:2000])


def test_a_new_salt_reshuffles_users_and_a_share_change_moves_only_the_margin():
    users = [f"u{i}" for i in range(10_000)]
    before = {u: two_arms(0.5).assign(u).name for u in users}
    resalted = {u: two_arms(0.5, salt="s2").assign(u).name for u in users}
    moved = sum(before[u] != resalted[u] for u in users) / len(users)
    assert 0.4 < moved < 0.6  # independent halves
    grown = {u: two_arms(0.6).assign(u).name for u in users}
    # Growing arm a from 50 to 60 %: users only move b -> a, about 10 % of them.
    assert all(not (before[u] == "a" and grown[u] == "b") for u in users)
    assert 0.08 < sum(before[u] != grown[u] for u in users) / len(users) < 0.12


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_parser(data):
    try:
        s = apply_announcement(BASE, data)
    except InvalidRecord as exc:
        assert exc.reason and exc.step == "parse model-update"
    else:
        assert abs(sum(a.share for a in s.arms) - 1) < 1e-6
