"""Pure helpers of the NDCG-vs-diversity measurement (models/diversity.py)."""
import numpy as np
import pytest

from models.diversity import index_embeddings, ndcg_hr_at_k


def test_index_embeddings_by_model_index():
    matrix = np.arange(6, dtype=np.float32).reshape(3, 2)
    table, missing = index_embeddings({"a": 2, "b": 3, "zz": 4}, ["b", "a", "c"], matrix)
    assert missing == 1  # "zz" has no text embedding: a zero row
    np.testing.assert_array_equal(table, [[0, 0], [0, 0], [2, 3], [0, 1], [0, 0]])


@pytest.mark.parametrize("order, pos, expected", [
    ([4, 0, 2], 4, (1.0, 1.0)),
    ([4, 0, 2], 0, (1 / np.log2(3), 1.0)),
    ([4, 0, 2], 7, (0.0, 0.0)),
    (list(range(20)), 12, (0.0, 0.0)),  # below the top 10
])
def test_ndcg_hr_at_10(order, pos, expected):
    assert ndcg_hr_at_k(np.array(order), pos) == pytest.approx(expected)
