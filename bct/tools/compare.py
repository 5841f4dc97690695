"""All-method comparison: train the old model, the oracle and every compatible method from one
config folder, evaluate them all, and write the paper's table, P-scores, update gain,
partial-backfill curves and plots (the numbers are defined in docs/evaluation.md).

It runs as one process (one GPU, or the CPU). To make the table from models trained separately,
for instance with torchrun through the scripts, test each of them and use
`python -m bct.tools.summarize --oracle ...` instead.

python -m bct.tools.compare --config-dir configs/synthetic [--methods bct lce ...] [--seeds 0 1 2]
    [--datasets rparis6k roxford5k gldv2] [--out DIR] [--fresh] [--generations N [--fractions F1,F2,...]]
    [KEY VALUE ...]

The folder must hold old_model.yml, extract_feat.yml, new_<method>.yml, new_oracle.yml and
test_model.yml. Finished steps are reused (a checkpoint whose stored config equals the requested
one); an interrupted training run resumes; --fresh starts over. Outputs in --out:
results.md, results.json, backfill.png, self_cross.png.

--generations N trains chains of N model generations instead (bct.tools.generations; AdvBCT, BCT
and the oracle unless --methods says otherwise) and writes their compatibility matrices to
--out/generations; docs/generations.md.
"""
import argparse
import json
import os
import shutil
import time

import numpy as np

from bct.config import cfg_from_yaml_text, load_cfg, training_settings
from bct.engine.checkpoint import load_checkpoint, load_trained_model
from bct.engine.distributed import init_distributed
from bct.engine.trainer import LAST_POINTER, output_dir
from bct.evaluation.metrics import compatibility_scores, meets_bct_criterion
from bct.evaluation.protocol import evaluate_gldv2_models, evaluate_revisited_models, headline
from bct.evaluation.report import DATASET_TITLES, backfill_curve_table, markdown_table
from bct.tools.common import run
from bct.tools.prepare_gldv2 import parse_fractions
from bct.utils.errors import BadInputError
from bct.utils.fileio import file_digest, jsonable, write_json_atomic, write_text_atomic
from bct.utils.logger import setup_logger

METHODS = ("bct", "lce", "unibct", "hot_refresh", "advbct")
TITLES = {"bct": "BCT", "lce": "LCE", "unibct": "UniBCT", "hot_refresh": "Hot-refresh", "advbct": "AdvBCT"}


def _same_config(ckpt_path: str, cfg) -> bool:
    """Whether a finished run was trained with the same settings (evaluation settings aside) and
    from the pretrained weights that its config names now (not an older file under that name)."""
    stored = cfg_from_yaml_text(load_checkpoint(ckpt_path)["config"])
    starts = [s.PRETRAINED_PATH for s in (cfg.OLD_MODEL, cfg.NEW_MODEL) if s.PRETRAINED and s.PRETRAINED_PATH]
    newer_start = any(os.path.isfile(p) and os.path.getmtime(p) > os.path.getmtime(ckpt_path) for p in starts)
    return training_settings(stored) == training_settings(cfg) and not newer_start


def train_step(cfg_path: str, opts: list, logger, name: str) -> tuple:
    """Train (or reuse, or resume) one model; returns (final checkpoint path, training seconds)."""
    from bct.tools import train

    cfg = load_cfg(cfg_path, opts)
    out = output_dir(cfg)
    final = os.path.join(out, "model_final.pth")
    timing = os.path.join(out, "train_time.json")
    if os.path.isfile(final):
        if not _same_config(final, cfg):
            raise BadInputError(f"{final} was trained with a different config; pass --fresh or another --out")
        seconds = json.load(open(timing))["seconds"] if os.path.isfile(timing) else float("nan")
        logger.info(f"[{name}] reusing {final} (trained in {seconds:.0f}s)")
        return final, seconds
    resume = os.path.isfile(os.path.join(out, LAST_POINTER))
    logger.info(f"[{name}] training with {cfg_path}" + (" (resuming)" if resume else ""))
    start = time.time()
    train.main(["--cfg", cfg_path, *(["--resume"] if resume else []), *opts])
    seconds = time.time() - start
    write_json_atomic(timing, {"seconds": seconds})
    logger.info(f"[{name}] trained in {seconds:.0f}s")
    return final, seconds


def extract_step(cfg_path: str, opts: list, logger) -> None:
    from bct.tools import extract_feat

    cfg = load_cfg(cfg_path, opts)
    radius = os.path.join(cfg.EXTRACT.SAVE_DIR, "radius.json")
    old = cfg.OLD_MODEL.MODEL_PATH
    if os.path.isfile(radius) and os.path.getmtime(radius) >= os.path.getmtime(old):
        logger.info(f"[statistics] reusing {radius}")
        return
    extract_feat.main(["--cfg", cfg_path, *opts])


def evaluate(cfg, dataset: str, new_path: str, old_path: str, device, backfill: bool) -> dict:
    """Evaluate a checkpoint (and its cross-test against old_path if given) on one dataset."""
    new_model, _ = load_trained_model(cfg, "new", path=new_path, device=device, check=("emb_dim",))
    old_model = None
    digests = {"new": file_digest(new_path)}
    if old_path:
        old_model, _ = load_trained_model(cfg, "old", path=old_path, device=device, check=("emb_dim",))
        digests["old"] = file_digest(old_path)
    kwargs = dict(device=device, with_old_self=False, use_cache=cfg.EVAL.USE_CACHE, digests=digests, backfill=backfill)
    if dataset == "gldv2":
        return evaluate_gldv2_models(cfg, cfg.EVAL.GLDV2_ROOT, new_model, old_model, **kwargs)
    return evaluate_revisited_models(cfg, dataset, cfg.EVAL.ROOT, new_model, old_model, **kwargs)


def _curve(result: dict) -> list:
    """(ratio, headline mAP x100) pairs of a backfill curve."""
    if result["dataset"] == "gldv2":
        return [(p["ratio"], 100.0 * p["map"]) for p in result["backfill"]["private"]]
    return [(p["ratio"], 100.0 * p["medium"]) for p in result["backfill"]]


# Overrides that describe the benchmark's models, not the pretrained start: their class counts and
# checkpoints, and their training recipe (the start has its own, in pretrain.yml, as ImageNet weights
# do not change with the recipe of the models that load them). The rest applies to the pretraining
# run too: input size, data, device, threads, and the keys that size a run to its data and device
# (TRAIN.BATCH_SIZE, TRAIN.MAX_ITERS).
START_OWN_KEYS = ("OLD_MODEL.", "NEW_MODEL.", "SEED", "TRAIN.EPOCHS", "TRAIN.OPTIMIZER.", "TRAIN.LR_SCHEDULER.",
                  "TRAIN.CLIP_GRAD")


def pretrain_step(config_dir: str, opts: list, logger) -> None:
    """The shared pretrained start (synthetic counterpart of ImageNet), made once for every seed and
    model when the folder has a pretrain.yml: one run per architecture, published where the models'
    *.PRETRAINED_PATH names it."""
    cfg_path = os.path.join(config_dir, "pretrain.yml")
    if not os.path.isfile(cfg_path):
        return
    from bct.tools.pretrain import ensure_pretrained

    starts = {}
    for name in ("old_model.yml", "new_oracle.yml"):
        c = load_cfg(os.path.join(config_dir, name), opts)
        for sec in (c.OLD_MODEL, c.NEW_MODEL):
            if sec.PRETRAINED and sec.PRETRAINED_PATH:
                if starts.setdefault(sec.PRETRAINED_PATH, sec.ARCH) != sec.ARCH:
                    raise BadInputError(f"{config_dir}: {sec.PRETRAINED_PATH} is the pretrained start of both "
                                        f"{starts[sec.PRETRAINED_PATH]} and {sec.ARCH}; give each its own file")
    pairs = [opts[i:i + 2] for i in range(0, len(opts) - 1, 2)]
    shared = [x for k, v in pairs if not k.startswith(START_OWN_KEYS) for x in (k, v)]
    for path, arch in starts.items():
        ensure_pretrained(cfg_path, path, [*shared, "OLD_MODEL.ARCH", arch], log=logger.info)


def run_seed(args, seed: int, out: str, logger, device) -> dict:
    d = args.config_dir
    # Everything a seed writes stays under its folder: models, statistics and the feature cache.
    stats = os.path.join(out, "old_stats")
    opts = ["SEED", str(seed), "OUTPUT", out, "EVAL.CACHE_DIR", os.path.join(out, "feature_cache"), *args.opts]
    old_path, old_time = train_step(os.path.join(d, "old_model.yml"), opts, logger, "old")
    extract_step(os.path.join(d, "extract_feat.yml"),
                 opts + ["OLD_MODEL.MODEL_PATH", old_path, "EXTRACT.SAVE_DIR", stats], logger)
    new_opts = opts + ["OLD_MODEL.MODEL_PATH", old_path, "EVAL.OLD_SAVE_FILE", os.path.join(stats, "radius.json"),
                       "EVAL.OLD_ANGLE_FILE", os.path.join(stats, "angle.json")]
    paths, times = {}, {"old": old_time}
    for m in ["oracle", *args.methods]:
        paths[m], times[m] = train_step(os.path.join(d, f"new_{m}.yml"), new_opts, logger, m)
    cfg = load_cfg(os.path.join(d, "test_model.yml"), opts)
    res = {"seed": seed, "train_seconds": times, "backfill_seed": cfg.EVAL.BACKFILL_SEED, "old_self": {},
           "oracle_self": {}, "oracle_cross": {}, "methods": {}, "curves": {}}
    for ds in args.datasets:
        res["old_self"][ds] = headline(evaluate(cfg, ds, old_path, "", device, False), "self")
        # The oracle's cross-test is the no-compatibility reference: about chance.
        oracle = evaluate(cfg, ds, paths["oracle"], old_path, device, False)
        res["oracle_self"][ds], res["oracle_cross"][ds] = headline(oracle, "self"), headline(oracle, "cross")
        for m in args.methods:
            r = evaluate(cfg, ds, paths[m], old_path, device, True)
            entry = res["methods"].setdefault(m, {"self": {}, "cross": {}})
            entry["self"][ds], entry["cross"][ds] = headline(r, "self"), headline(r, "cross")
            res["curves"].setdefault(m, {})[ds] = _curve(r)
        logger.info(f"[seed {seed}] {ds}: old {res['old_self'][ds]:.2f}, oracle {res['oracle_self'][ds]:.2f}, " +
                    ", ".join(f"{m} {res['methods'][m]['self'][ds]:.2f}/{res['methods'][m]['cross'][ds]:.2f}"
                              for m in args.methods))
    for m in args.methods:
        e = res["methods"][m]
        e["scores"] = compatibility_scores(res["old_self"], res["oracle_self"], e["self"], e["cross"])
        e["bct_criterion"] = {ds: meets_bct_criterion(res["old_self"][ds], e["self"][ds], e["cross"][ds])
                              for ds in args.datasets}
    return res


def _mean_std(values):
    v = np.array(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def aggregate(per_seed: list, methods, datasets) -> dict:
    """Mean and std over seeds of every number of the table."""
    agg = {"old_self": {}, "oracle_self": {}, "methods": {}}
    for key in ("old_self", "oracle_self"):
        for ds in datasets:
            agg[key][ds] = _mean_std([r[key][ds] for r in per_seed])
    for m in methods:
        e = agg["methods"][m] = {"self": {}, "cross": {}, "scores": {}, "curves": {}}
        for part in ("self", "cross"):
            for ds in datasets:
                e[part][ds] = _mean_std([r["methods"][m][part][ds] for r in per_seed])
        for s in ("P_up", "P_comp", "P_1", "gain"):
            e["scores"][s] = _mean_std([r["methods"][m]["scores"][s] for r in per_seed])
        for ds in datasets:
            ratios = [p[0] for p in per_seed[0]["curves"][m][ds]]
            e["curves"][ds] = [(ratio,) + _mean_std([r["curves"][m][ds][i][1] for r in per_seed])
                               for i, ratio in enumerate(ratios)]
    return agg


def _pm(ms):
    return f"{ms[0]:.2f} ± {ms[1]:.2f}"


def seeds_table(agg: dict, methods, datasets) -> str:
    head = ["Method"] + [f"{DATASET_TITLES.get(d, d)} (self / cross)" for d in datasets] + ["P_up", "P_comp", "P_1", "Gain %"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, key in (("Old", "old_self"), ("Oracle", "oracle_self")):
        lines.append("| " + " | ".join([name] + [f"{_pm(agg[key][d])} / —" for d in datasets] + ["—"] * 4) + " |")
    for m in methods:
        e = agg["methods"][m]
        cells = [f"{_pm(e['self'][d])} / {_pm(e['cross'][d])}" for d in datasets]
        s = e["scores"]
        cells += [_pm(s["P_up"]), _pm(s["P_comp"]), _pm(s["P_1"]), _pm((100 * s["gain"][0], 100 * s["gain"][1]))]
        lines.append("| " + " | ".join([TITLES.get(m, m)] + cells) + " |")
    return "\n".join(lines) + "\n"


def plots(per_seed: list, agg: dict, methods, datasets, out: str) -> list:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.4), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        for m in methods:
            curve = agg["methods"][m]["curves"][ds]
            x = [100 * c[0] for c in curve]
            ax.errorbar(x, [c[1] for c in curve], yerr=[c[2] for c in curve], marker="o", capsize=3, label=TITLES.get(m, m))
        ax.axhline(agg["old_self"][ds][0], color="grey", ls="--", lw=1, label="old self")
        ax.axhline(agg["oracle_self"][ds][0], color="black", ls=":", lw=1, label="oracle self")
        ax.set_title(DATASET_TITLES.get(ds, ds))
        ax.set_xlabel("% of gallery re-embedded")
        ax.set_ylabel("mAP (new queries)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Partial backfill")
    fig.tight_layout()
    files.append(os.path.join(out, "backfill.png"))
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.4), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        x = np.arange(len(methods))
        selfs = [agg["methods"][m]["self"][ds][0] for m in methods]
        cross = [agg["methods"][m]["cross"][ds][0] for m in methods]
        ax.bar(x - 0.2, selfs, 0.4, label="self M(new,new)")
        ax.bar(x + 0.2, cross, 0.4, label="cross M(new,old)")
        ax.axhline(agg["old_self"][ds][0], color="grey", ls="--", lw=1, label="old self")
        ax.axhline(agg["oracle_self"][ds][0], color="black", ls=":", lw=1, label="oracle self")
        ax.set_xticks(x, [TITLES.get(m, m) for m in methods], rotation=30, fontsize=8)
        ax.set_title(DATASET_TITLES.get(ds, ds))
        ax.set_ylabel("mAP")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    files.append(os.path.join(out, "self_cross.png"))
    fig.savefig(files[-1], dpi=110)
    plt.close(fig)
    return files


def write_report(per_seed, args, out: str) -> dict:
    methods, datasets = list(args.methods), list(args.datasets)
    agg = aggregate(per_seed, methods, datasets)
    md = [f"# Compatibility comparison ({args.config_dir}, seeds {', '.join(str(r['seed']) for r in per_seed)})", "",
          "Headline numbers x100: Medium mAP for the revisited sets, private mAP@100 for GLDv2; "
          "cells read self-test M(new, new) / cross-test M(new, old).", ""]
    if len(per_seed) == 1:
        r = per_seed[0]
        rows = [{"method": TITLES.get(m, m), "self": r["methods"][m]["self"], "cross": r["methods"][m]["cross"]} for m in methods]
        md.append(markdown_table(rows, datasets, r["old_self"], r["oracle_self"]))
    else:
        md.append(seeds_table(agg, methods, datasets))
    one = len(per_seed) == 1

    def value(values):  # one seed: the number; several: mean ± std
        return f"{values[0]:.2f}" if one else _pm(_mean_std(values))

    md += ["", "Oracle cross-test M(oracle, old), the no-compatibility reference: " +
           ", ".join(f"{DATASET_TITLES.get(d, d)} {value([r['oracle_cross'][d] for r in per_seed])}"
                     for d in datasets)]
    md += ["", "BCT criterion (cross > old self and new self > old self), per dataset" +
           (":" if one else ", in the mean over seeds (and on how many seeds):"), ""]
    for m in methods:
        cells = []
        for ds in datasets:
            held = sum(bool(r["methods"][m]["bct_criterion"][ds]) for r in per_seed)
            if one:
                cells.append(f"{DATASET_TITLES.get(ds, ds)} {'yes' if held else 'no'}")
                continue
            a = agg["methods"][m]  # (mean, std) per dataset
            in_mean = meets_bct_criterion(agg["old_self"][ds][0], a["self"][ds][0], a["cross"][ds][0])
            cells.append(f"{DATASET_TITLES.get(ds, ds)} {'yes' if in_mean else 'no'} ({held} of {len(per_seed)} seeds)")
        md.append(f"- {TITLES.get(m, m)}: " + ", ".join(cells))
    # How far each cross-test is above the no-compatibility level, and how far the old model is.
    mean = {k: {d: float(np.mean([r[k][d] for r in per_seed])) for d in datasets} for k in ("old_self", "oracle_cross")}
    md += ["", "Above the no-compatibility level (smallest ratio over the sets, means over seeds): old self-test / "
           "oracle cross-test " + f"{min(mean['old_self'][d] / mean['oracle_cross'][d] for d in datasets):.1f}x; "
           "cross-test / oracle cross-test: " + ", ".join(
               f"{TITLES.get(m, m)} {min(np.mean([r['methods'][m]['cross'][d] for r in per_seed]) / mean['oracle_cross'][d] for d in datasets):.1f}x"
               for m in methods)]
    for ds in datasets:
        md += ["", f"Partial backfill on {DATASET_TITLES.get(ds, ds)} (mAP of new queries; per-image refresh, "
               f"seed {per_seed[0]['backfill_seed']}{'' if one else '; mean over seeds'}):", ""]
        md.append(backfill_curve_table({TITLES.get(m, m): [(c[0], c[1]) for c in agg["methods"][m]["curves"][ds]]
                                        for m in methods}))
    times = {k: _mean_std([r["train_seconds"][k] for r in per_seed]) for k in per_seed[0]["train_seconds"]}
    md += ["", "Training time (s): " + ", ".join(f"{TITLES.get(k, k)} {v[0]:.0f}" for k, v in times.items())]
    pngs = plots(per_seed, agg, methods, datasets, out)
    md += ["", *[f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in pngs]]
    text = "\n".join(md) + "\n"
    write_text_atomic(os.path.join(out, "results.md"), text)
    write_json_atomic(os.path.join(out, "results.json"), jsonable({"per_seed": per_seed, "aggregate": agg,
                                                                   "train_seconds": times}), indent=1)
    return {"markdown": text, "aggregate": agg, "pngs": pngs}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-dir", default="configs/synthetic")
    p.add_argument("--methods", nargs="+", default=None, choices=METHODS,
                   help="default: every method, or advbct bct with --generations")
    p.add_argument("--datasets", nargs="+", default=["rparis6k", "roxford5k", "gldv2"])
    p.add_argument("--seeds", nargs="+", type=int, default=[1234])
    p.add_argument("--out", default="", help="default: output/compare/<config folder name>")
    p.add_argument("--fresh", action="store_true", help="delete --out first and train everything again")
    p.add_argument("--generations", type=int, default=0,
                   help="train chains of N model generations (generation t+1 against generation t) and report "
                        "their compatibility matrices")
    p.add_argument("--fractions", type=parse_fractions, default=None,
                   help="with --generations: the nested split of each generation, e.g. 0.3,0.6,1.0 (default: t "
                        "times the old model's fraction, all of the data for the last)")
    p.add_argument("opts", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    if args.opts[:1] == ["--"]:  # `--seeds 1 2 -- KEY VALUE`: "--" ends the list of seeds
        args.opts = args.opts[1:]
    if args.fractions and not args.generations:
        args.generations = len(args.fractions)
    out = args.out or os.path.join("output", "compare", os.path.relpath(args.config_dir, "configs").replace(os.sep, "_"))
    if args.fresh and os.path.isdir(out):
        shutil.rmtree(out)
    logger = setup_logger(out)
    device = init_distributed("auto", "auto")
    if args.generations:
        from bct.tools.generations import DEFAULT_METHODS, run_generations
        args.methods = args.methods or list(DEFAULT_METHODS)
        return run_generations(args, out, logger, device)
    args.methods = args.methods or list(METHODS)
    start = time.time()
    pretrain_step(args.config_dir, args.opts, logger)
    per_seed = [run_seed(args, s, os.path.join(out, f"seed{s}"), logger, device) for s in args.seeds]
    report = write_report(per_seed, args, out)
    logger.info("\n" + report["markdown"])
    logger.info(f"comparison written to {out}/results.md (+ results.json, backfill.png, self_cross.png) "
                f"in {time.time() - start:.0f}s")
    return report


if __name__ == "__main__":
    run(main)
