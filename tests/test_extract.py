"""Feature extraction (docs/evaluation.md): one process and a two-process gloo world give the same features in
dataset order (uneven last batch included); streaming to .npy and the on-disk cache."""
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from bct.config import load_cfg
from bct.data.datasets import ImageListDataset
from bct.data.lists import read_image_list
from bct.data.transforms import build_transform
from bct.evaluation.extract import cache_key, cached_extract, extract_features
from bct.models import build_model
from helpers import make_image_list


def _setup(root):
    lst = make_image_list(str(root), n_classes=3, per_class=3)  # 9 images: uneven over 2 ranks x batch 2
    paths, labels = read_image_list(lst, str(root))
    ds = ImageListDataset(str(root), paths, labels, build_transform(32))
    torch.manual_seed(0)
    model = build_model(load_cfg("", ["NEW_MODEL.PRETRAINED", "False", "NEW_MODEL.NUM_CLASSES", "3"]), "new").eval()
    return ds, model


def _worker(rank, port, root, out):
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method="env://")
    ds, model = _setup(root)
    feats, ok = extract_features(model, ds, batch_size=2, num_workers=0)
    np.save(os.path.join(out, f"rank{rank}.npy"), np.asarray(feats))
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_sharded_extraction_matches_single_process(tmp_path):
    ds, model = _setup(tmp_path)
    single, ok = extract_features(model, ds, batch_size=2, num_workers=0)
    assert single.shape == (9, 256) and ok.all()
    assert np.allclose(np.linalg.norm(single, axis=1), 1.0, atol=1e-5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_worker, args=(port, tmp_path, str(tmp_path)), nprocs=2, join=True, start_method="spawn")
    for r in range(2):
        assert np.allclose(np.load(tmp_path / f"rank{r}.npy"), single, atol=1e-5)


def test_streaming_and_cache(tmp_path):
    ds, model = _setup(tmp_path)
    ref, _ = extract_features(model, ds, batch_size=4, num_workers=0)
    streamed, _ = extract_features(model, ds, batch_size=4, num_workers=0, out_path=str(tmp_path / "f.npy"))
    assert isinstance(streamed, np.memmap) and np.allclose(streamed, ref)
    key = cache_key("digest", ds.paths, {"size": 32})
    assert key != cache_key("other", ds.paths, {"size": 32}) != cache_key("digest", ds.paths[:-1], {"size": 32})
    first, _ = cached_extract(model, ds, key, str(tmp_path / "cache"), True, batch_size=4, num_workers=0)
    assert sorted(os.listdir(tmp_path / "cache")) == [f"{key}.npy", f"{key}.ok.npy"]
    # A cache hit must not run the model at all.
    again, _ = cached_extract(None, ds, key, str(tmp_path / "cache"), True, batch_size=4, num_workers=0)
    assert np.allclose(again, first)
