import numpy as np
import pytest

from udfs.features import OOV, PAD, FeatureEncoder, Lookup

ITEMS = {"10": 2, "11": 3, "12": 4}
EVENTS = {"view": 1, "click": 2, "rate": 5}


def test_lookup_maps_unknown_to_default():
    lk = Lookup(ITEMS, OOV)
    assert lk(np.array(["12", "nope", "10", ""])).tolist() == [4, OOV, 2, OOV]
    assert Lookup({}, OOV)(np.array(["x"])).tolist() == [OOV]


def test_encode_left_pads_history_and_right_pads_candidates():
    enc = FeatureEncoder(ITEMS, EVENTS, max_len=4)
    x = enc.encode(
        hist_items=[["10", "11"], [], ["10", "11", "12", "zzz", "11"]],
        hist_events=[["view", "click"], [], ["rate", "rate", "rate", "view", "bogus"]],
        candidates=[["12"], ["10", "x", "11"], ["11", "10"]])
    assert x.hist_items.dtype == np.int64 and x.hist_items.shape == (3, 4)
    assert x.hist_items.tolist() == [[PAD, PAD, 2, 3], [PAD] * 4, [3, 4, OOV, 3]]
    assert x.hist_events.tolist() == [[PAD, PAD, 1, 2], [PAD] * 4, [5, 5, 1, PAD]]
    assert x.candidates.tolist() == [[4, PAD, PAD], [2, OOV, 3], [3, 2, PAD]]
    assert x.n_candidates.tolist() == [1, 3, 2]


def test_history_is_padded_to_the_longest_in_the_batch_only():
    enc = FeatureEncoder(ITEMS, EVENTS, max_len=200)
    x = enc.encode([["10"], ["10", "11", "12"]], [["view"], ["view"] * 3], [["11"], ["12"]])
    assert x.hist_items.shape == (2, 3) and x.hist_items.tolist() == [[PAD, PAD, 2], [2, 3, 4]]
    assert enc.encode([[]], [[]], [["10"]]).hist_items.shape == (1, 1)  # an empty history: one PAD


def test_encode_accepts_numpy_rows_as_pandas_delivers_them():
    enc = FeatureEncoder(ITEMS, EVENTS, max_len=2)
    x = enc.encode([np.array(["10"], dtype=object)], [np.array(["view"], dtype=object)],
                   [np.array(["11", "12"], dtype=object)])
    assert x.hist_items.tolist() == [[2]] and x.candidates.tolist() == [[3, 4]]


def test_encode_rejects_misaligned_history():
    with pytest.raises(ValueError):
        FeatureEncoder(ITEMS, EVENTS, 3).encode([["10"]], [[]], [["10"]])
