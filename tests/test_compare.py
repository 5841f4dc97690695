"""The all-method comparison (bct.tools.compare -> bct.pipeline.comparison) end to end on the tiny synthetic
set: table, JSON and plots written, P-scores consistent with the JSON, backfill endpoints = cross/self,
reuse of finished steps, the comparison's own log, and the shared pretrained start keyed by its settings."""
import json
import os

import pytest

from bct.evaluation.metrics import compatibility_scores

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYN = os.path.join(REPO, "configs", "synthetic")
TINY = ["TRAIN.BATCH_SIZE", "4", "TRAIN.EPOCHS", "1", "TRAIN.MAX_ITERS", "2", "TRAIN.INPUT_SIZE", "32",
        "EVAL.INPUT_SIZE", "32", "TRAIN.NUM_WORKERS", "0", "EVAL.NUM_WORKERS", "0", "OLD_MODEL.NUM_CLASSES", "3",
        "NEW_MODEL.NUM_CLASSES", "10", "DEVICE", "cpu"]


@pytest.mark.slow
def test_compare_end_to_end(tmp_path, monkeypatch):
    from bct.tools import compare, make_synthetic
    make_synthetic.main(["--out", str(tmp_path / "data" / "synthetic"), "--size", "tiny"])
    monkeypatch.chdir(tmp_path)
    argv = ["--config-dir", SYN, "--methods", "bct,advbct", "--datasets", "roxford5k,gldv2", "--out", "cmp", *TINY]
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
    # Each model's results keep their rankings, and the comparison's report page has a row group per method.
    from bct.tools import report
    assert (out / "seed1234" / "eval" / "old" / "roxford5k.rankings.npz").is_file()
    text = open(report.main([str(out), "--out", str(tmp_path / "page"), "--queries", "2", "--top", "3"])).read()
    assert all(f"data-group='{m}' data-test='{t}'" in text for m in ("bct", "advbct") for t in ("self", "cross"))
    # The comparison's own log holds its table; each model's log holds its training only.
    log = (out / "log.txt").read_text()
    assert "| AdvBCT |" in log and "comparison written to" in log and "epoch 1 iter" not in log
    model_log = (out / "seed1234" / "resnet18" / "new_advbct" / "log.txt").read_text()
    assert "epoch 1 iter" in model_log and "| AdvBCT |" not in model_log and "comparison written" not in model_log
    # A second run reuses every finished step.
    final = out / "seed1234" / "resnet18" / "new_advbct" / "model_final.pth"
    mtime = os.path.getmtime(final)
    compare.main(argv)
    assert os.path.getmtime(final) == mtime
    assert "[advbct] reusing" in (out / "log.txt").read_text()
    # Statistics and cached features belong to the run, not to the configs' shared folders.
    assert (out / "seed1234" / "old_stats" / "radius.json").is_file()
    assert any((out / "seed1234" / "feature_cache").iterdir())
    # The overrides (batch, iterations, input size) change the shared start's key: it gets its own file,
    # which the models load, and the file every synthetic config names is left alone.
    pre = tmp_path / "output" / "synthetic" / "pretrained"
    assert not (pre / "resnet18_pool.pth").exists()
    (keyed,) = [p for p in pre.iterdir() if p.suffix == ".pth"]
    assert keyed.name.startswith("resnet18_pool-") and (pre / (keyed.name + ".json")).is_file()
    assert os.path.relpath(keyed, tmp_path) in (out / "seed1234" / "resnet18" / "old_30class" / "config.yaml").read_text()
    assert {p.name for p in (tmp_path / "output" / "synthetic").iterdir()} == {"pretrained", "resnet18"}
    assert all(p.name.startswith("pretrain_") for p in (tmp_path / "output" / "synthetic" / "resnet18").iterdir())
    # Other settings in the same --out are refused with one line naming the first difference.
    from bct.utils.errors import BadInputError
    with pytest.raises(BadInputError, match=r"holds a trained model made with other settings or inputs: "
                                             r"TRAIN.EPOCHS: was 1, now 2"):
        compare.main(argv + ["TRAIN.EPOCHS", "2"])
    assert os.path.getmtime(final) == mtime


@pytest.mark.slow
def test_compare_the_newer_methods_end_to_end(tmp_path, monkeypatch):
    """The methods beyond the paper's (every catalogue method outside PAPER_ORDER) train and enter the table:
    a method with its own old model is scored against it, a wider (BT2) embedding meets the old gallery with
    its compatible part, a transformation (FastFill) gives one backfill curve per order."""
    from bct.config.methods import PAPER_ORDER, method_names, method_title
    from bct.tools import compare, make_synthetic
    make_synthetic.main(["--out", str(tmp_path / "data" / "synthetic"), "--size", "tiny"])
    monkeypatch.chdir(tmp_path)
    newer = [m for m in method_names(include_oracle=False) if m not in PAPER_ORDER]
    compare.main(["--config-dir", SYN, "--methods", ",".join(newer), "--datasets", "gldv2", "--out", "cmp", *TINY,
                  "FASTFILL.EPOCHS", "2"])
    res = json.load(open(tmp_path / "cmp" / "results.json"))["per_seed"][0]
    md = (tmp_path / "cmp" / "results.md").read_text()
    for m in newer:
        e = res["methods"][m]
        old_self = e["own_old"]["self"] if "own_old" in e else res["old_self"]
        again = compatibility_scores(old_self, res["oracle_self"], e["self"], e["cross"])
        assert again["P_1"] == pytest.approx(e["scores"]["P_1"])
        assert f"| {method_title(m)} |" in md
        curve = res["curves"][m]["gldv2"]
        assert curve[0][1] == pytest.approx(e["cross"]["gldv2"]) and curve[-1][1] == pytest.approx(e["self"]["gldv2"])
        if "fastfill" in e:
            assert set(e["fastfill"]["gldv2"]["auc"]) >= {"random", "distinct", "uncertainty"}
            assert "area under the curve" in md
    assert any("own_old" in res["methods"][m] for m in newer) and "their own old model" in md


def test_multi_seed_aggregate():
    from bct.pipeline.comparison import aggregate, seeds_table

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
    input, batch and device settings reach it, and then the start goes to its own file."""
    from bct.pipeline import comparison as compare
    seen = []
    monkeypatch.setattr(compare, "pretrained_start",
                        lambda cfg, out, keyed: seen.append((cfg, keyed)) or (out + "-key" if keyed else out))
    recipe = ["TRAIN.EPOCHS", "10", "TRAIN.LR_SCHEDULER.MILESTONES", "[7, 9]", "TRAIN.OPTIMIZER.BASE_LR", "0.05",
              "OLD_MODEL.NUM_CLASSES", "3"]
    setting = compare.Setting(SYN, recipe)
    setting.make_starts()
    (cfg, keyed), = seen
    assert cfg.TRAIN.EPOCHS == 6 and cfg.TRAIN.OPTIMIZER.BASE_LR == 0.03 and cfg.OLD_MODEL.NUM_CLASSES == 200
    assert not keyed and setting.starts == {}
    seen.clear()
    setting = compare.Setting(SYN, recipe + ["TRAIN.BATCH_SIZE", "32", "TRAIN.INPUT_SIZE", "48", "NUM_THREADS", "1"])
    setting.make_starts()
    (cfg, keyed), = seen
    assert (cfg.TRAIN.BATCH_SIZE, cfg.TRAIN.INPUT_SIZE, cfg.NUM_THREADS, cfg.TRAIN.EPOCHS) == (32, 48, 1, 6)
    out = "./output/synthetic/pretrained/resnet18_pool.pth-key"
    assert keyed and setting.starts == {"./output/synthetic/pretrained/resnet18_pool.pth": out}
    assert setting.file("old_model.yml").OLD_MODEL.PRETRAINED_PATH == out
    assert setting.method("advbct").NEW_MODEL.PRETRAINED_PATH == out


@pytest.mark.parametrize("argv, words", [
    (["--seeds", "1", "2"], "'2' is not a config key"),
    (["--methods", "bct,nope"], "unknown method 'nope'; the methods are bct, lce, unibct, hot_refresh, advbct"),
    (["--seeds", "1,x"], "'x' is not a whole number"),
    (["SEED", "3"], "SEED is set by the comparison"),
])
def test_bad_arguments_are_refused_before_any_work(tmp_path, argv, words):
    from bct.tools import compare
    from bct.utils.errors import BadInputError
    with pytest.raises(BadInputError, match=words):
        compare.main(["--config-dir", SYN, "--out", str(tmp_path / "c"), *argv])
    assert not (tmp_path / "c").exists()


@pytest.mark.catalogue
def test_the_method_list_and_titles_come_from_the_catalogue(tmp_path, monkeypatch):
    from bct.config.methods import PAPER_ORDER, method_names
    from bct.pipeline import comparison as compare
    paper = [m for m in PAPER_ORDER if m != "oracle"]
    assert method_names(include_oracle=False)[:len(paper)] == paper  # the paper's order first
    assert compare.check_methods(["all"]) == method_names(include_oracle=False)
    got = {}
    monkeypatch.setattr(compare, "run_seed", lambda setting, methods, sets, seed, out, logger, device:
                        got.setdefault("methods", methods) and (_ for _ in ()).throw(SystemExit(0)))
    monkeypatch.setattr(compare.Setting, "make_starts", lambda self: None)
    with pytest.raises(SystemExit):
        compare.compare(SYN, out=str(tmp_path / "c"), opts=["NUM_THREADS", "1"])
    assert got["methods"] == paper  # the default keeps the paper's methods; --methods all adds the others


def test_multi_seed_report_gives_the_criterion_in_the_mean_and_per_seed(tmp_path):
    """Three seeds: the criterion line says whether it holds in the mean and on how many seeds; the
    plots carry error bars and say which mAP they show."""
    from bct.pipeline.comparison import write_report

    def seed(old, cross):
        ok = cross > old
        m = {"self": {"rparis6k": 50.0}, "cross": {"rparis6k": cross}, "bct_criterion": {"rparis6k": ok},
             "scores": {"P_up": 1.0, "P_comp": 1.0, "P_1": 1.0, "gain": 0.0}}
        return {"seed": 0, "backfill_seed": 0, "train_seconds": {"advbct": 1.0}, "old_self": {"rparis6k": old},
                "oracle_self": {"rparis6k": 60.0}, "oracle_cross": {"rparis6k": 3.0}, "methods": {"advbct": m},
                "curves": {"advbct": {"rparis6k": [(0.0, cross), (1.0, 50.0)]}}}
    args = ("configs/synthetic", ["advbct"], ["rparis6k"], str(tmp_path))
    # Margins +2, +2, -1: met in the mean (+1) and on two seeds of three.
    text = write_report([seed(30.0, 32.0), seed(28.0, 30.0), seed(33.0, 32.0)], *args)["markdown"]
    assert "- AdvBCT: RParis yes (2 of 3 seeds)" in text
    text = write_report([seed(30.0, 29.0), seed(28.0, 27.0), seed(33.0, 34.0)], *args)["markdown"]
    assert "- AdvBCT: RParis no (1 of 3 seeds)" in text
    assert "- AdvBCT: RParis yes\n" in write_report([seed(30.0, 32.0)], *args)["markdown"]
    assert (tmp_path / "self_cross.png").stat().st_size > 0 and (tmp_path / "backfill.png").stat().st_size > 0


def test_plots_label_their_axes_and_keep_legends_off_the_data(tmp_path, monkeypatch):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.figure
    from bct.pipeline import plots
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figs.append(fig))
    agg = {"old_self": {"rparis6k": (30.0, 1.0), "gldv2": (10.0, 0.5)},
           "oracle_self": {"rparis6k": (60.0, 1.0), "gldv2": (20.0, 0.5)},
           "methods": {"advbct": {"self": {"rparis6k": (50.0, 2.0), "gldv2": (15.0, 1.0)},
                                  "cross": {"rparis6k": (35.0, 2.0), "gldv2": (11.0, 1.0)},
                                  "curves": {d: [(0.0, 35.0, 1.0), (1.0, 50.0, 2.0)] for d in ("rparis6k", "gldv2")}}}}
    labels = {"rparis6k": {"title": "RParis", "headline_name": "Medium mAP"},
              "gldv2": {"title": "GLDv2", "headline_name": "private mAP@100"}}
    plots.self_cross_plot(agg, ["advbct"], ["rparis6k", "gldv2"], "x.png", seeds=3, labels=labels)
    plots.backfill_plot(agg, ["advbct"], ["rparis6k", "gldv2"], "y.png", seeds=3, labels=labels)
    for fig in figs:
        axes = fig.get_axes()
        assert [ax.get_ylabel().split(" x100")[0] for ax in axes] == ["Medium mAP", "private mAP@100"]
        assert all(ax.get_legend() is None for ax in axes) and fig.legends  # one legend, outside the axes
    bars = figs[0].get_axes()[0]
    from matplotlib.container import BarContainer
    bar_sets = [c for c in bars.containers if isinstance(c, BarContainer)]
    assert len(bar_sets) == 2 and all(c.errorbar is not None for c in bar_sets)  # error bars on the means
    heat = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: heat.append(fig))
    nan = float("nan")
    plots.matrix_heatmaps([[{"title": "a", "names": ["g1", "g2"], "matrix": [[27.0, nan], [20.0, 25.0]]},
                            {"title": "b", "names": ["g1", "g2"], "matrix": [[3.6, nan], [2.0, 3.0]]}]], "z.png")
    images = [ax.get_images()[0] for ax in heat[0].get_axes() if ax.get_images()]
    assert len(images) == 2 and images[0].norm.vmin == images[1].norm.vmin == 2.0
    assert images[0].norm.vmax == images[1].norm.vmax == 27.0
