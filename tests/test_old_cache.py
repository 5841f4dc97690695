"""TRAIN.CACHE_OLD_FEATURES: the old model runs in the first epoch only, and the training is the same
as with the old model run on every batch (bit-identical weights on the CPU), on one process and
under two-process DDP, where the ranks share what they computed."""
import os

import pytest
import torch
import torch.multiprocessing as mp

from bct.config import load_cfg
from bct.engine.trainer import Trainer
from bct.utils.logger import setup_logger
from helpers import make_image_list, train_opts
from helpers import free_port as _free_port

EPOCHS = 3


def _old_model(tmp_path, lst):
    setup_logger("")
    cfg = load_cfg("", train_opts(tmp_path, lst, tmp_path / "old", 4, **{"TRAIN.EPOCHS": 1, "TAG": "old"}))
    Trainer(cfg, torch.device("cpu")).train()
    return str(tmp_path / "old" / "resnet18" / "old" / "model_final.pth")


def _new_trainer(tmp_path, lst, old, out, cache, batch=8, **extra):
    opts = train_opts(tmp_path, lst, tmp_path / out, 4, role="new", **{
        "TRAIN.TYPE": "adv_compatible", "COMP_LOSS.TYPE": "hot_refresh", "OLD_MODEL.MODEL_PATH": old,
        "OLD_MODEL.NUM_CLASSES": 4, "TRAIN.EPOCHS": EPOCHS, "TRAIN.BATCH_SIZE": batch,
        "TRAIN.CACHE_OLD_FEATURES": cache, "DETERMINISTIC": True, **extra})
    setup_logger("")
    t = Trainer(load_cfg("", opts), torch.device("cpu"))
    calls = []
    t.old_model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    return t, calls


@pytest.mark.slow
def test_cache_runs_the_old_model_once_per_image_and_changes_nothing(tmp_path):
    lst = make_image_list(str(tmp_path), per_class=6)  # 24 images: 3 batches of 8 per epoch
    old = _old_model(tmp_path, lst)
    runs = {}
    for cache in (True, False):
        t, calls = _new_trainer(tmp_path, lst, old, f"new_{cache}", cache)
        hist = t.train()
        runs[cache] = ({k: v.clone() for k, v in t.task.state_dict().items()}, hist, calls)
    with_cache, without = runs[True], runs[False]
    assert len(with_cache[2]) == 3 and len(without[2]) == 3 * EPOCHS
    assert all(torch.equal(with_cache[0][k], without[0][k]) for k in without[0])
    assert with_cache[1][EPOCHS]["loss"] == without[1][EPOCHS]["loss"]


def test_cache_is_off_with_augmentation(tmp_path):
    lst = make_image_list(str(tmp_path), per_class=4)
    old = _old_model(tmp_path, lst)
    t, _ = _new_trainer(tmp_path, lst, old, "aug", True, **{"TRAIN.AUGMENT": True})
    assert t.old_cache is None


def _ddp_worker(rank, world, port, root, lst, old, out):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from bct.engine.distributed import cleanup_distributed, init_distributed
    init_distributed("cpu", "gloo", timeout_s=120)
    result = {}
    for cache in (True, False):
        t, calls = _new_trainer(root, lst, old, f"ddp_{cache}", cache, batch=4)
        t.train()
        result[cache] = {"params": {k: v.clone() for k, v in t.model.named_parameters()}, "calls": len(calls),
                         "complete": t.old_cache.complete if t.old_cache else None}
    torch.save(result, os.path.join(out, f"rank{rank}.pt"))
    cleanup_distributed()


@pytest.mark.slow
def test_cache_under_two_process_ddp(tmp_path):
    lst = make_image_list(str(tmp_path), per_class=6)  # 24 images: 3 batches of 4 per rank and epoch
    old = _old_model(tmp_path, lst)
    out = tmp_path / "res"
    out.mkdir()
    mp.start_processes(_ddp_worker, args=(2, _free_port(), tmp_path, lst, old, str(out)), nprocs=2,
                       join=True, start_method="spawn")
    for rank in (0, 1):
        r = torch.load(out / f"rank{rank}.pt", weights_only=False)
        # Both ranks hold every image's embedding after the first epoch (each computed half of them).
        assert r[True]["complete"] and r[True]["calls"] == 3 and r[False]["calls"] == 3 * EPOCHS
        assert all(torch.equal(r[True]["params"][k], r[False]["params"][k]) for k in r[False]["params"])
