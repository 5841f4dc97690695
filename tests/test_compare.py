"""The all-method comparison tool end to end on the tiny synthetic set: table, JSON and plots written,
P-scores consistent with the JSON, backfill endpoints = cross/self, reuse of finished steps."""
import json
import os

import pytest

from bct.evaluation.metrics import compatibility_scores

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["TRAIN.BATCH_SIZE", "4", "TRAIN.EPOCHS", "1", "TRAIN.MAX_ITERS", "2", "TRAIN.INPUT_SIZE", "32",
        "EVAL.INPUT_SIZE", "32", "TRAIN.NUM_WORKERS", "0", "EVAL.NUM_WORKERS", "0", "OLD_MODEL.NUM_CLASSES", "3",
        "NEW_MODEL.NUM_CLASSES", "10", "DEVICE", "cpu"]


def test_compare_end_to_end(tmp_path, monkeypatch):
    from bct.tools import compare, make_synthetic
    make_synthetic.main(["--out", str(tmp_path / "data" / "synthetic"), "--size", "tiny"])
    monkeypatch.chdir(tmp_path)
    argv = ["--config-dir", os.path.join(REPO, "configs", "synthetic"), "--methods", "bct", "advbct",
            "--datasets", "roxford5k", "gldv2", "--out", "cmp", *TINY]
    compare.main(argv)
    out = tmp_path / "cmp"
    for name in ("results.md", "results.json", "backfill.png", "self_cross.png"):
        assert (out / name).stat().st_size > 0
    res = json.load(open(out / "results.json"))["per_seed"][0]
    for m in ("bct", "advbct"):
        e = res["methods"][m]
        again = compatibility_scores(res["old_self"], res["oracle_self"], e["self"], e["cross"])
        assert again["P_1"] == pytest.approx(e["scores"]["P_1"]) and again["P_up"] == pytest.approx(e["scores"]["P_up"])
        for ds in ("roxford5k", "gldv2"):
            curve = res["curves"][m][ds]
            assert curve[0][1] == pytest.approx(e["cross"][ds]) and curve[-1][1] == pytest.approx(e["self"][ds])
    assert set(res["oracle_cross"]) == {"roxford5k", "gldv2"}
    md = (out / "results.md").read_text()
    assert "| AdvBCT |" in md and "P_comp" in md and "Partial backfill on ROxford" in md
    assert "±" not in md and "mean over seeds" not in md  # one seed: plain numbers
    # A second run reuses every finished step.
    mtime = os.path.getmtime(out / "seed1234" / "resnet18" / "new_advbct" / "model_final.pth")
    compare.main(argv)
    assert os.path.getmtime(out / "seed1234" / "resnet18" / "new_advbct" / "model_final.pth") == mtime
    assert "reusing" in (out / "log.txt").read_text()
    # Statistics and cached features belong to the run, not to the configs' shared folders.
    assert (out / "seed1234" / "old_stats" / "radius.json").is_file()
    assert any((out / "seed1234" / "feature_cache").iterdir())
    # Outside the run's folder there is only the shared pretrained start (the demo uses it too), made
    # once by the configs' pretrain.yml on the generator's pretraining pool and loaded by every model.
    start = tmp_path / "output" / "synthetic" / "pretrained" / "resnet18_pool.pth"
    assert start.is_file() and (tmp_path / "output" / "synthetic" / "pretrained" / "resnet18_pool.pth.json").is_file()
    assert {p.name for p in (tmp_path / "output" / "synthetic").iterdir()} == {"pretrained", "resnet18"}
    assert all(p.name.startswith("pretrain_") for p in (tmp_path / "output" / "synthetic" / "resnet18").iterdir())
    assert "[pretrain] training" in (out / "log.txt").read_text()


def test_multi_seed_aggregate():
    from bct.tools.compare import aggregate, seeds_table
    def seed(v):
        m = {"self": {"d": 50.0 + v}, "cross": {"d": 40.0 + v}, "scores": {"P_up": v, "P_comp": v, "P_1": v, "gain": v}}
        return {"old_self": {"d": 30.0 + v}, "oracle_self": {"d": 60.0}, "methods": {"bct": m},
                "curves": {"bct": {"d": [(0.0, 40.0 + v), (1.0, 50.0 + v)]}}}
    agg = aggregate([seed(0), seed(2)], ["bct"], ["d"])
    assert agg["methods"]["bct"]["self"]["d"] == pytest.approx((51.0, 2 ** 0.5))
    assert agg["methods"]["bct"]["curves"]["d"][1] == pytest.approx((1.0, 51.0, 2 ** 0.5))
    assert "51.00 ± 1.41 / 41.00 ± 1.41" in seeds_table(agg, ["bct"], ["d"])


def test_overrides_of_the_models_recipe_leave_the_pretrained_start_alone(monkeypatch):
    """`benchmark.sh TRAIN.EPOCHS 10` retrains the models, not the shared start: the start keeps the recipe
    of pretrain.yml (as ImageNet weights do not follow the recipe of the models that load them), while
    input, batch and device settings reach it."""
    from bct.tools import compare, pretrain
    seen = []
    monkeypatch.setattr(pretrain, "ensure_pretrained", lambda cfg, path, opts, log: seen.append(opts))
    opts = ["TRAIN.EPOCHS", "10", "TRAIN.LR_SCHEDULER.MILESTONES", "[7, 9]", "TRAIN.BATCH_SIZE", "32",
            "TRAIN.OPTIMIZER.BASE_LR", "0.05", "SEED", "3", "OLD_MODEL.NUM_CLASSES", "3",
            "TRAIN.INPUT_SIZE", "48", "NUM_THREADS", "1"]
    compare.pretrain_step(os.path.join(REPO, "configs", "synthetic"), opts, type("L", (), {"info": print}))
    assert seen == [["TRAIN.BATCH_SIZE", "32", "TRAIN.INPUT_SIZE", "48", "NUM_THREADS", "1", "OLD_MODEL.ARCH", "resnet18"]]


def test_seeds_then_overrides_after_a_double_dash(tmp_path, monkeypatch):
    """`--seeds 1 2 -- KEY VALUE` ends the list of seeds with "--", which is not taken for an override."""
    from bct.tools import compare
    got = {}
    monkeypatch.setattr(compare, "pretrain_step", lambda d, opts, logger: got.setdefault("opts", opts))
    monkeypatch.setattr(compare, "run_seed", lambda args, seed, out, logger, device: (_ for _ in ()).throw(SystemExit(0)))
    with pytest.raises(SystemExit):
        compare.main(["--config-dir", os.path.join(REPO, "configs", "synthetic"), "--out", str(tmp_path / "c"),
                      "--seeds", "1", "2", "--", "NUM_THREADS", "1"])
    assert got["opts"] == ["NUM_THREADS", "1"]


def test_multi_seed_report_gives_the_criterion_in_the_mean_and_per_seed(tmp_path):
    """Three seeds: the criterion line says whether it holds in the mean and on how many seeds."""
    from types import SimpleNamespace
    from bct.tools.compare import write_report

    def seed(old, cross):
        ok = cross > old
        m = {"self": {"rparis6k": 50.0}, "cross": {"rparis6k": cross}, "bct_criterion": {"rparis6k": ok},
             "scores": {"P_up": 1.0, "P_comp": 1.0, "P_1": 1.0, "gain": 0.0}}
        return {"seed": 0, "backfill_seed": 0, "train_seconds": {"advbct": 1.0}, "old_self": {"rparis6k": old},
                "oracle_self": {"rparis6k": 60.0}, "oracle_cross": {"rparis6k": 3.0}, "methods": {"advbct": m},
                "curves": {"advbct": {"rparis6k": [(0.0, cross), (1.0, 50.0)]}}}
    args = SimpleNamespace(config_dir="configs/synthetic", methods=["advbct"], datasets=["rparis6k"])
    # Margins +2, +2, -1: met in the mean (+1) and on two seeds of three.
    text = write_report([seed(30.0, 32.0), seed(28.0, 30.0), seed(33.0, 32.0)], args, str(tmp_path))["markdown"]
    assert "- AdvBCT: RParis yes (2 of 3 seeds)" in text
    text = write_report([seed(30.0, 29.0), seed(28.0, 27.0), seed(33.0, 34.0)], args, str(tmp_path))["markdown"]
    assert "- AdvBCT: RParis no (1 of 3 seeds)" in text
    assert "- AdvBCT: RParis yes\n" in write_report([seed(30.0, 32.0)], args, str(tmp_path))["markdown"]
