"""The cold-item protocol's split, requests and candidates (models/cold.py) on a synthetic log."""
from __future__ import annotations

import numpy as np
import pytest

from models.artifact import FIRST_ITEM_INDEX, OOV_INDEX
from models.cold import choose_cold_items, cold_requests, sample_candidates, without_items
from models.errors import ModelError


def test_held_out_items_are_a_seeded_share_of_the_items_in_the_log(synthetic_dataset):
    log = synthetic_dataset.log
    cold = choose_cold_items(log, 0.1, seed=7)
    present = np.unique(log.items)
    assert len(cold) == round(0.1 * len(present)) and set(cold) <= set(present)
    assert np.array_equal(cold, choose_cold_items(log, 0.1, seed=7))
    assert not np.array_equal(cold, choose_cold_items(log, 0.1, seed=8))
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ModelError):
            choose_cold_items(log, bad, seed=7)


def test_training_log_has_no_interaction_with_a_held_out_item(synthetic_dataset):
    log = synthetic_dataset.log
    cold = choose_cold_items(log, 0.2, seed=1)
    warm = without_items(log, cold)
    assert not np.isin(warm.items, cold).any()
    assert len(warm.items) == int((~np.isin(log.items, cold)).sum())


def test_requests_predict_the_last_held_out_item_from_known_items_only(synthetic_dataset):
    log = synthetic_dataset.log
    cold = choose_cold_items(log, 0.2, seed=1)
    is_cold = np.isin(np.arange(len(log.item_ids)), cold)
    # The vocabulary a model trained without the held-out items has.
    warm_ids = [str(log.item_ids[c]) for c in range(len(log.item_ids)) if not is_cold[c]]
    item_to_index = {i: FIRST_ITEM_INDEX + n for n, i in enumerate(warm_ids)}
    event_to_index = {str(e): n + 1 for n, e in enumerate(log.event_names)}
    hists, evs, targets, seen = cold_requests(log, cold, item_to_index, event_to_index)
    assert len(targets) > 0 and len(hists) == len(evs) == len(targets) == len(seen)
    assert is_cold[targets].all()
    for h, e in zip(hists, evs):
        assert len(h) == len(e) > 0
        assert (h != OOV_INDEX).all()  # held-out items are left out of the history, not mapped to OOV
    # Each target is its user's last interaction with a held-out item.
    expected = []
    for u in range(log.n_users):
        items = log.items[log.user_slice(u)]
        where = np.flatnonzero(is_cold[items])
        if where.size and (~is_cold[items[:where[-1]]]).any():  # a known item before it
            expected.append(items[where[-1]])
    assert targets.tolist() == expected


def test_candidates_are_the_target_then_distinct_never_seen_items(synthetic_dataset):
    log = synthetic_dataset.log
    cold = choose_cold_items(log, 0.2, seed=1)
    _, _, targets, seen = cold_requests(log, cold, {}, {})
    cands = sample_candidates(targets, seen, len(log.item_ids), seed=3, n=20)
    assert cands.shape == (len(targets), 21) and np.array_equal(cands[:, 0], targets)
    for row, s in zip(cands, seen):
        assert len(set(row[1:])) == 20 and not set(row[1:]) & set(s)
    with pytest.raises(ModelError, match="cannot sample"):
        sample_candidates(targets, seen, len(log.item_ids), seed=3, n=len(log.item_ids))
