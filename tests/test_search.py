"""Exact search (faiss and torch backends) against a brute-force stable sort, ties included."""
import faiss
import numpy as np
import pytest
import torch

from bct.evaluation.search import rank_matrix, search
from bct.utils.errors import BadInputError

faiss.omp_set_num_threads(1)
torch.set_num_threads(1)

BACKENDS = ["faiss", "torch"]


def _tied_features(rng, n, d=3):
    """Small integer vectors: inner products are exact in float32 and tie very often."""
    return rng.integers(-1, 2, size=(n, d)).astype(np.float32)


def _brute_force(query, gallery, k):
    scores = query.astype(np.float64) @ gallery.astype(np.float64).T
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, ids, 1), ids


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [None, 1, 4, 29, 30, 45])
def test_matches_brute_force_with_ties(backend, k):
    rng = np.random.default_rng(0)
    query, gallery = _tied_features(rng, 9), _tied_features(rng, 30)
    gallery[5] = gallery[20]  # an exact duplicate gallery image
    scores, ids = search(query, gallery, k=k, backend=backend, batch_size=4)
    kk = 30 if k is None else min(k, 30)
    ref_scores, ref_ids = _brute_force(query, gallery, kk)
    assert ids.shape == (9, kk) and ids.dtype == np.int64 and scores.dtype == np.float32
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(scores, ref_scores)


@pytest.mark.parametrize("backend", BACKENDS)
def test_deep_cutoff_tie_goes_to_smallest_index(backend):
    # k >= 100 sends faiss down its reservoir path, where ties at the cut-off are arbitrary.
    rng = np.random.default_rng(1)
    query, gallery = _tied_features(rng, 5, d=2), _tied_features(rng, 400, d=2)
    _, ids = search(query, gallery, k=150, backend=backend)
    np.testing.assert_array_equal(ids, _brute_force(query, gallery, 150)[1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_batching_does_not_change_results(backend):
    rng = np.random.default_rng(2)
    query, gallery = _tied_features(rng, 13, d=4), _tied_features(rng, 50, d=4)
    reference = search(query, gallery, k=7, backend=backend, batch_size=4096)
    for batch_size in (1, 3, 13):
        got = search(query, gallery, k=7, backend=backend, batch_size=batch_size)
        np.testing.assert_array_equal(got[1], reference[1])
        np.testing.assert_array_equal(got[0], reference[0])


def test_backends_agree_on_normalised_float_features():
    rng = np.random.default_rng(3)
    query = rng.standard_normal((20, 16)).astype(np.float32)
    gallery = rng.standard_normal((200, 16))  # float64 and non-contiguous: converted
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    gallery = (gallery / np.linalg.norm(gallery, axis=1, keepdims=True))[::-1]
    ranks_faiss = rank_matrix(query, gallery, backend="faiss")
    ranks_torch = rank_matrix(query, gallery, backend="torch", batch_size=6)
    assert ranks_faiss.shape == (200, 20)
    np.testing.assert_array_equal(ranks_faiss, ranks_torch)
    # Each column is a permutation of the gallery, best match first.
    assert (np.sort(ranks_faiss, axis=0) == np.arange(200)[:, None]).all()
    best = np.argmax(query @ gallery.T, axis=1)
    np.testing.assert_array_equal(ranks_faiss[0], best)


def test_input_errors_are_clear():
    q = np.zeros((2, 8), np.float32)
    with pytest.raises(BadInputError, match="dim 8 but gallery features have dim 4"):
        search(q, np.zeros((3, 4), np.float32))
    with pytest.raises(BadInputError, match="gallery is empty"):
        search(q, np.zeros((0, 8), np.float32))
    with pytest.raises(BadInputError, match="unknown backend"):
        search(q, np.zeros((3, 8), np.float32), backend="annoy")
    with pytest.raises(BadInputError, match="NaN or inf"):
        search(np.full((2, 8), np.nan, np.float32), np.zeros((3, 8), np.float32))
    with pytest.raises(ValueError, match="k must be positive"):
        search(q, np.zeros((3, 8), np.float32), k=0)


def test_empty_query_set():
    scores, ids = search(np.zeros((0, 4), np.float32), np.eye(4, dtype=np.float32), k=2)
    assert scores.shape == (0, 2) and ids.shape == (0, 2)
