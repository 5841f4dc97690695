"""The shared training loop: loss falls, exact resume (epoch boundary and mid-epoch), checkpoint
contents, a non-finite loss stops with a message, and a two-process gloo DDP run."""
import os
import signal

import pytest
import torch
import torch.multiprocessing as mp

from bct.config import load_cfg
from bct.models.loading import load_checkpoint
from bct.engine.trainer import Trainer, output_dir
from bct.utils.errors import TrainingError
from bct.utils.logger import setup_logger
from helpers import free_port as _free_port, make_image_list, train_opts


def _trainer(root, list_path, out, resume=False, **extra):
    cfg = load_cfg("", train_opts(root, list_path, out, 4, **extra))
    setup_logger("")
    return Trainer(cfg, torch.device("cpu"), resume=resume)


def _params(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_loss_falls_and_checkpoints_are_complete(tiny_list):
    root, lst = tiny_list
    t = _trainer(root, lst, root / "out", **{"TRAIN.EPOCHS": 4, "TRAIN.OPTIMIZER.BASE_LR": 0.01, "DETERMINISTIC": True})
    before = signal.getsignal(signal.SIGTERM)
    hist = t.train()
    # The stop-cleanly handlers end with the training: processes forked later (a resize pool, a
    # loader) must still die on SIGTERM.
    assert signal.getsignal(signal.SIGTERM) is before
    # 3 steps an epoch: a small rate keeps the fall steady on every thread count and seed.
    assert hist[4]["loss_ce"] < hist[1]["loss_ce"]
    ckpt = load_checkpoint(os.path.join(output_dir(t.cfg), "model_final.pth"))
    assert ckpt["epoch"] == 4
    assert ckpt["meta"] == {**ckpt["meta"], "arch": "resnet18", "emb_dim": 256, "num_classes": 4, "role": "old"}
    for key in ("model", "optimizer", "scheduler", "scaler", "config", "rng"):
        assert key in ckpt
    assert "TRAIN" in ckpt["config"]
    # The config is written with the checkpoints, so it always describes the run that wrote them.
    assert open(os.path.join(output_dir(t.cfg), "config.yaml")).read() == ckpt["config"]
    names = sorted(os.listdir(output_dir(t.cfg)))
    assert [n for n in names if n.endswith(".tmp")] == []


def test_max_iters_caps_steps_and_epoch_means_are_over_steps_taken(tiny_list):
    root, lst = tiny_list
    t = _trainer(root, lst, root / "out", **{"TRAIN.EPOCHS": 1, "TRAIN.MAX_ITERS": 2})
    seen, step = [], t.step

    def recording_step(*args):
        log, stop = step(*args)
        seen.append(log["loss"])
        return log, stop

    t.step = recording_step
    hist = t.train()
    assert len(seen) == 2
    assert hist[1]["loss"] == pytest.approx(sum(seen) / 2, rel=1e-6)


def test_resume_at_epoch_boundary_is_exact(tmp_path):
    lst = make_image_list(str(tmp_path))
    common = {"DETERMINISTIC": True, "TRAIN.LR_SCHEDULER.MILESTONES": "[1]"}
    full = _trainer(tmp_path, lst, tmp_path / "a", **common)
    full.train()
    first = _trainer(tmp_path, lst, tmp_path / "b", **{**common, "TRAIN.EPOCHS": 1})
    first.train()
    second = _trainer(tmp_path, lst, tmp_path / "b", resume=True, **common)
    assert second.start_epoch == 1
    second.train()
    a, b = _params(full.model), _params(second.model)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_mid_epoch_stop_saves_and_resumes_exactly(tmp_path):
    lst = make_image_list(str(tmp_path))
    common = {"DETERMINISTIC": True}
    full = _trainer(tmp_path, lst, tmp_path / "a", **common)
    full.train()
    t = _trainer(tmp_path, lst, tmp_path / "b", **common)
    real_step = t.step
    calls = {"n": 0}

    def step(*args):
        calls["n"] += 1
        if calls["n"] == 2:  # as if SIGTERM arrived during the second iteration of epoch 1
            t._stop_signal = 15
        return real_step(*args)

    t.step = step
    with pytest.raises(KeyboardInterrupt):
        t.train()
    ckpt = load_checkpoint(os.path.join(output_dir(t.cfg), "ckpt_interrupted.pth"))
    assert (ckpt["epoch"], ckpt["iteration"]) == (0, 2)
    resumed = _trainer(tmp_path, lst, tmp_path / "b", resume=True, **common)
    assert (resumed.start_epoch, resumed.start_iter) == (0, 2)
    resumed.train()
    a, b = _params(full.model), _params(resumed.model)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_non_finite_loss_stops_with_message(tiny_list):
    root, lst = tiny_list
    t = _trainer(root, lst, root / "out", **{"TRAIN.OPTIMIZER.BASE_LR": 1e30})
    with pytest.raises(TrainingError, match="non-finite loss at epoch 1 iteration"):
        t.train()


def test_batch_larger_than_dataset_is_refused(tiny_list):
    from bct.utils.errors import BadInputError
    root, lst = tiny_list
    with pytest.raises(BadInputError, match="cannot fill one batch of TRAIN.BATCH_SIZE 64"):
        _trainer(root, lst, root / "out", **{"TRAIN.BATCH_SIZE": 64})


def _ddp_worker(rank, world, port, root, lst, out):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from bct.engine.distributed import cleanup_distributed, init_distributed
    init_distributed("cpu", "gloo", timeout_s=120)
    t = _trainer(root, lst, out, **{"TRAIN.BATCH_SIZE": 4, "TRAIN.EPOCHS": 3, "MODEL.SYNC_BN": True})
    hist = t.train()
    # Parameters only: BN running statistics are per process (DDP re-broadcasts them from rank 0 each step).
    torch.save({"params": dict(t.model.named_parameters()), "hist": hist}, os.path.join(out, f"rank{rank}.pt"))
    cleanup_distributed()


@pytest.mark.slow
def test_two_process_gloo_training(tmp_path):
    lst = make_image_list(str(tmp_path), per_class=8)
    out = tmp_path / "out"
    out.mkdir()
    mp.start_processes(_ddp_worker, args=(2, _free_port(), tmp_path, lst, str(out)), nprocs=2,
                       join=True, start_method="spawn")
    r0 = torch.load(out / "rank0.pt", weights_only=False)
    r1 = torch.load(out / "rank1.pt", weights_only=False)
    assert all(torch.equal(r0["params"][k], r1["params"][k]) for k in r0["params"])
    assert r0["hist"][3]["loss_ce"] < r0["hist"][1]["loss_ce"]
    # Only rank 0 wrote checkpoints.
    ckpt_dir = out / "resnet18" / "t"
    assert sorted(p.name for p in ckpt_dir.glob("*.pth")) == ["ckpt_epoch_1.pth", "ckpt_epoch_2.pth", "ckpt_epoch_3.pth",
                                                              "model_final.pth"]


def test_loader_workers_above_the_usable_cores_are_lowered_with_one_line(tiny_list, capsys):
    import warnings

    from bct.data import datasets
    from bct.engine.loaders import build_train_loader

    root, lst = tiny_list
    cores = len(os.sched_getaffinity(0))
    setup_logger("")
    cfg = load_cfg("", train_opts(root, lst, root / "out", 4, **{"TRAIN.NUM_WORKERS": cores + 7}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's own "suggested max number of worker" warning would fail here
        loader, _ = build_train_loader(cfg, 0)
        build_train_loader(cfg, 0)
    assert loader.num_workers == cores
    out = capsys.readouterr().out
    assert out.count(f"TRAIN.NUM_WORKERS {cores + 7} lowered to {cores}") == 1
    assert datasets.loader_workers(cores, "EVAL.NUM_WORKERS") == cores
    assert datasets.loader_workers(0, "EVAL.NUM_WORKERS") == 0


def test_non_finite_weights_are_never_saved(tiny_list):
    # One step at an absurd rate: the step's loss is finite, the update it makes is not.
    root, lst = tiny_list
    t = _trainer(root, lst, root / "out", **{"TRAIN.OPTIMIZER.BASE_LR": 1e30, "TRAIN.EPOCHS": 1, "TRAIN.MAX_ITERS": 1})
    with pytest.raises(TrainingError, match=r"after epoch 1 turn the last training batch into non-finite embeddings; "
                                            r"nothing saved \(no model_final\.pth\); no checkpoint of this run has been saved") as e:
        t.train()
    assert "\n" not in str(e.value)
    assert not [p for p in os.listdir(output_dir(t.cfg)) if p.endswith(".pth")]


def test_a_diverged_run_goes_on_from_its_last_finite_checkpoint_at_a_lower_rate(tiny_list):
    root, lst = tiny_list
    out = root / "out"
    _trainer(root, lst, out, **{"TRAIN.EPOCHS": 1}).train()
    folder = output_dir(load_cfg("", train_opts(root, lst, out, 4)))
    final_before = load_checkpoint(os.path.join(folder, "model_final.pth"))
    # The second epoch diverges: the run stops naming the epoch-1 checkpoint and writes nothing.
    diverging = _trainer(root, lst, out, resume=True, **{"TRAIN.OPTIMIZER.BASE_LR": 1e30, "TRAIN.RESUME_WITH_NEW_LR": True})
    with pytest.raises(TrainingError, match=r"non-finite .*ckpt_epoch_1\.pth.*--resume TRAIN\.RESUME_WITH_NEW_LR True "
                                            r"TRAIN\.OPTIMIZER\.BASE_LR <lower>"):
        diverging.train()
    assert not os.path.exists(os.path.join(folder, "ckpt_epoch_2.pth"))
    assert load_checkpoint(os.path.join(folder, "model_final.pth"))["epoch"] == final_before["epoch"] == 1
    # Another rate without the flag is refused, with the flag to use.
    from bct.utils.errors import BadInputError
    with pytest.raises(BadInputError, match=r"TRAIN\.OPTIMIZER\.BASE_LR 0\.01 -> 0\.001.*add TRAIN\.RESUME_WITH_NEW_LR True"):
        _trainer(root, lst, out, resume=True, **{"TRAIN.OPTIMIZER.BASE_LR": 0.001})
    lower = _trainer(root, lst, out, resume=True, **{"TRAIN.OPTIMIZER.BASE_LR": 0.001, "TRAIN.RESUME_WITH_NEW_LR": True})
    assert lower.start_epoch == 1
    assert [g["lr"] for g in lower.optimizer.param_groups] == [pytest.approx(0.001)]
    hist = lower.train()
    assert all(torch.isfinite(torch.tensor(v)) for v in hist[2].values())
    assert load_checkpoint(os.path.join(folder, "model_final.pth"))["epoch"] == 2


def test_resume_refuses_a_checkpoint_with_non_finite_weights(tiny_list):
    from bct.engine.checkpoint import save_checkpoint
    from bct.utils.errors import BadInputError
    root, lst = tiny_list
    t = _trainer(root, lst, root / "out", **{"TRAIN.EPOCHS": 1, "TRAIN.MAX_ITERS": 1})
    t.train()
    path = os.path.join(output_dir(t.cfg), "ckpt_epoch_1.pth")
    ckpt = load_checkpoint(path)
    ckpt["model"]["head.fc.weight"][0, 0] = float("nan")
    save_checkpoint(path, ckpt)  # as a version without the check could have left it
    with pytest.raises(BadInputError, match=r"ckpt_epoch_1\.pth holds non-finite weights \(head\.fc\.weight\)"):
        _trainer(root, lst, root / "out", resume=True, **{"TRAIN.EPOCHS": 2, "TRAIN.MAX_ITERS": 1})


def test_checkpoint_meta_names_the_input_the_model_expects(tiny_list):
    from bct.models.loading import load_model
    root, lst = tiny_list
    t = _trainer(root, lst, root / "out", **{"TRAIN.EPOCHS": 1, "TRAIN.MAX_ITERS": 1})
    t.train()
    model = load_model(os.path.join(output_dir(t.cfg), "model_final.pth"))
    assert (model.meta["input_size"], model.meta["mean"], model.meta["std"]) == \
        (32, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    assert (model.meta["old_model_path"], model.meta["old_model_digest"]) == ("", "")


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_resume_from_an_empty_or_truncated_last_checkpoint_is_one_line(tiny_list, damage):
    from bct.utils.errors import BadInputError
    root, lst = tiny_list
    t = _trainer(root, lst, root / "out", **{"TRAIN.EPOCHS": 1, "TRAIN.MAX_ITERS": 1})
    t.train()
    path = os.path.join(output_dir(t.cfg), "ckpt_epoch_1.pth")
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(b"" if damage == "empty" else data[: len(data) // 2])
    with pytest.raises(BadInputError) as err:
        _trainer(root, lst, root / "out", resume=True, **{"TRAIN.EPOCHS": 2, "TRAIN.MAX_ITERS": 1})
    line = str(err.value)
    assert "\n" not in line and path in line and "point last_checkpoint" in line and "earlier ckpt_epoch_<N>.pth" in line
    assert ("is empty (0 bytes)" if damage == "empty" else "truncated, corrupt or not a checkpoint") in line


def test_new_lr_where_no_run_exists_is_refused_and_writes_nothing(tiny_list):
    from bct.tools import train as train_tool
    from bct.utils.errors import BadInputError
    root, lst = tiny_list
    out = root / "fresh"
    with pytest.raises(BadInputError, match=r"--new-lr \(TRAIN.RESUME_WITH_NEW_LR\): .* holds no run to continue from"):
        train_tool.main(["--new-lr", "0.001", *train_opts(root, lst, out, 4)])
    assert not out.exists()


def test_a_hook_sees_every_step_and_epoch_and_may_add_to_the_epoch_log(tiny_list):
    """Logging, validation and checkpoints hang on the loop as hooks (bct.engine.hooks); one more
    registered from outside is called after them, on every step and epoch, and its values join the history."""
    from bct.engine.hooks import Checkpointer, HookBase, Metrics, Validation

    class Recorder(HookBase):
        def __init__(self):
            self.calls = []

        def after_step(self, epoch, it, log, rate):
            self.calls.append(("step", epoch, it, "loss" in log and rate > 0))

        def after_epoch(self, done, epoch_log):
            # The checkpoint hook ran before this one: the epoch's file is there.
            saved = os.path.isfile(os.path.join(self.trainer.out_dir, f"ckpt_epoch_{done}.pth"))
            self.calls.append(("epoch", done, saved))
            epoch_log["recorded"] = float(done)

        def after_train(self):
            self.calls.append(("end",))

    root, lst = tiny_list
    t = _trainer(root, lst, root / "out", **{"TRAIN.EPOCHS": 2, "TRAIN.MAX_ITERS": 2})
    assert [type(h) for h in t.hooks] == [Validation, Metrics, Checkpointer]
    rec = Recorder()
    t.register_hooks([rec])
    hist = t.train()
    assert rec.calls == [("step", 0, 0, True), ("step", 0, 1, True), ("epoch", 1, True),
                         ("step", 1, 0, True), ("step", 1, 1, True), ("epoch", 2, True), ("end",)]
    assert hist[2]["recorded"] == 2.0
