"""Revisited Oxford/Paris ground truth (safe unpickling, validation, E/M/H protocols) and the GLDv2
retrieval lists (bct.data.revisited, bct.data.gldv2)."""
import os
import pickle

import numpy as np
import pytest

from bct.data.gldv2 import load_gldv2_retrieval
from bct.data.revisited import load_gnd, load_revisited
from bct.utils.errors import BadInputError


class _Exploit:
    """Pickles to a call of os.system: what a hostile gnd file would hold."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {self.marker}",))


def _gnd(numpy_arrays: bool):
    arr = (lambda v: np.array(v, dtype=np.int64)) if numpy_arrays else list
    return {
        "imlist": [f"db_{i}" for i in range(6)],
        "qimlist": ["q_0", "q_1"],
        "gnd": [
            {"bbx": np.array([1.5, 2.0, 30.0, 40.0]) if numpy_arrays else [1.5, 2.0, 30.0, 40.0],
             "easy": arr([0, 2]), "hard": arr([4]), "junk": arr([5])},
            {"bbx": [0, 0, 10, 10], "easy": arr([]), "hard": arr([1, 3]), "junk": arr([])},
        ],
    }


def _dataset(root, name="synval", gnd=None, protocol=pickle.DEFAULT_PROTOCOL, where="inside"):
    folder = root / name
    (folder / "jpg").mkdir(parents=True)
    pkl = (folder if where == "inside" else root) / f"gnd_{name}.pkl"
    pkl.write_bytes(pickle.dumps(gnd if gnd is not None else _gnd(True), protocol=protocol))
    return pkl


def test_malicious_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned.txt"
    pkl = tmp_path / "gnd_evil.pkl"
    pkl.write_bytes(pickle.dumps({"imlist": [], "qimlist": [], "gnd": [_Exploit(marker)]}))
    with pytest.raises(BadInputError) as e:
        load_gnd(str(pkl))
    msg = str(e.value)
    assert msg.startswith(str(pkl)) and "refused to unpickle" in msg and "system" in msg
    assert not marker.exists()

    pkl.write_bytes(pickle.dumps({"x": eval}, protocol=2))
    with pytest.raises(BadInputError, match=r"refused to unpickle __builtin__.eval"):
        load_gnd(str(pkl))


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize("numpy_arrays", [True, False])
def test_valid_gnd_loads_with_paths_boxes_and_protocols(tmp_path, protocol, numpy_arrays):
    _dataset(tmp_path, gnd=_gnd(numpy_arrays), protocol=protocol)
    ds = load_revisited("synval", str(tmp_path))
    jpg = os.path.join(os.path.abspath(tmp_path), "synval", "jpg")
    assert ds.db_paths == [os.path.join(jpg, f"db_{i}.jpg") for i in range(6)]
    assert ds.query_paths == [os.path.join(jpg, "q_0.jpg"), os.path.join(jpg, "q_1.jpg")]
    assert ds.query_boxes == [[1.5, 2.0, 30.0, 40.0], [0.0, 0.0, 10.0, 10.0]]
    assert len(ds.gnd) == 2 and set(ds.gnd[0]) == {"bbx", "easy", "hard", "junk"}

    def as_sets(level):
        return [(sorted(p["ok"].tolist()), sorted(p["junk"].tolist())) for p in ds.protocol(level)]

    assert as_sets("easy") == [([0, 2], [4, 5]), ([], [1, 3])]
    assert as_sets("medium") == [([0, 2, 4], [5]), ([1, 3], [])]
    assert as_sets("hard") == [([4], [0, 2, 5]), ([1, 3], [])]
    assert all(p["ok"].dtype == np.int64 for p in ds.protocol("medium"))


def test_reference_layout_gnd_next_to_the_dataset_folder(tmp_path):
    _dataset(tmp_path, name="roxford5k", where="root")
    assert load_revisited("roxford5k", str(tmp_path)).name == "roxford5k"


def test_missing_gnd_says_what_to_download_and_where(tmp_path):
    (tmp_path / "rparis6k" / "jpg").mkdir(parents=True)
    with pytest.raises(BadInputError) as e:
        load_revisited("rparis6k", str(tmp_path))
    msg = str(e.value)
    assert os.path.join(str(tmp_path), "rparis6k", "gnd_rparis6k.pkl") in msg
    assert "download gnd_rparis6k.pkl from revisitop" in msg


@pytest.mark.parametrize("mutate, words", [
    (lambda g: g.pop("qimlist"), "key 'qimlist' is missing"),
    (lambda g: g["gnd"][1].pop("junk"), "gnd[1] lacks key 'junk'"),
    (lambda g: g["gnd"][0].update(easy=[0, 6]), "gnd[0]['easy'] holds indices outside 0..5"),
    (lambda g: g["gnd"][0].update(bbx=[1, 2, 3]), "gnd[0]['bbx'] must be 4 numbers"),
    (lambda g: g["gnd"].pop(), "gnd has 1 entries but qimlist has 2"),
])
def test_malformed_gnd_is_reported(tmp_path, mutate, words):
    gnd = _gnd(False)
    mutate(gnd)
    _dataset(tmp_path, gnd=gnd)
    with pytest.raises(BadInputError) as e:
        load_revisited("synval", str(tmp_path))
    assert words in str(e.value) and "gnd_synval.pkl" in str(e.value)


# --------------------------------------------------------------------------------------------
# GLDv2 retrieval lists
# --------------------------------------------------------------------------------------------

def _gldv2_lists(root, usage="private", gt="test/q/r/s/qrs1.jpg 0 2,0\ntest/t/u/v/tuv1.jpg 1 1\n"):
    (root / "gldv2_gallery_list.txt").write_text(
        "index/a/b/c/abc1.jpg 0\nindex/d/e/f/def1.jpg 1\nindex/g/h/i/ghi1.jpg 2\n")
    (root / f"gldv2_{usage}_query_list.txt").write_text("test/q/r/s/qrs1.jpg 0\ntest/t/u/v/tuv1.jpg 1\n")
    (root / f"gldv2_{usage}_query_gt.txt").write_text(gt)


def test_gldv2_retrieval_lists_load(tmp_path):
    _gldv2_lists(tmp_path)
    data = load_gldv2_retrieval(str(tmp_path), "private")
    base = os.path.abspath(tmp_path)
    assert data.gallery_paths[2] == os.path.join(base, "index/g/h/i/ghi1.jpg") and len(data.gallery_paths) == 3
    assert data.query_paths == [os.path.join(base, "test/q/r/s/qrs1.jpg"), os.path.join(base, "test/t/u/v/tuv1.jpg")]
    assert data.solution == {0: [2, 0], 1: [1]}


def test_gldv2_retrieval_errors(tmp_path):
    _gldv2_lists(tmp_path)
    with pytest.raises(BadInputError, match=r"gldv2_public_query_list.txt does not exist; run `python -m "
                                            r"bct.tools.prepare_gldv2 --root"):
        load_gldv2_retrieval(str(tmp_path), "public")
    with pytest.raises(BadInputError, match="usage must be one of public, private"):
        load_gldv2_retrieval(str(tmp_path), "Private")
    _gldv2_lists(tmp_path, gt="test/q/r/s/qrs1.jpg 0 2,3\ntest/t/u/v/tuv1.jpg 1 1\n")
    with pytest.raises(BadInputError, match=r"query_gt.txt:1: gallery row 3 but .*gallery_list.txt has 3 lines"):
        load_gldv2_retrieval(str(tmp_path), "private")
    _gldv2_lists(tmp_path, gt="test/q/r/s/qrs1.jpg 0 2\n")
    with pytest.raises(BadInputError, match=r"query_gt.txt:2: does not match"):
        load_gldv2_retrieval(str(tmp_path), "private")


def test_a_protocol_without_positives_is_read_and_named_and_none_at_all_is_refused(tmp_path):
    gnd = _gnd(False)
    for g in gnd["gnd"]:
        g["hard"] = []
    gnd["gnd"][1]["easy"] = [1]
    _dataset(tmp_path, gnd=gnd)
    assert load_revisited("synval", str(tmp_path)).empty_levels == ["hard"]
    for g in gnd["gnd"]:
        g["easy"] = []
    (tmp_path / "synval" / "gnd_synval.pkl").write_bytes(pickle.dumps(gnd))
    with pytest.raises(BadInputError, match=r"gnd_synval.pkl: no query has a positive image under any protocol \(the "
                                            r"'easy' and 'hard' lists of all 2 queries are empty\)"):
        load_revisited("synval", str(tmp_path))
