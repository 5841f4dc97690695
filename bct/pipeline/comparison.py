"""All-method comparison: train the old model, the oracle and every compatible method of one setting
folder (over one or more seeds), evaluate them all, and write the paper's table, P-scores, update
gain, partial-backfill curves and plots (the numbers are defined in docs/evaluation.md).

Every step is a library call on config objects: the setting's configs are loaded once with the
user's overrides, and each run's config is derived from them (bct.pipeline.configs.derive). Finished
steps of the same key are reused, interrupted ones resume, steps of another key are refused
(bct.pipeline.records). The comparison logs into <out>/log.txt; each training into its own folder.
"""
import os
import shutil
import time

import numpy as np

from bct.config import load_cfg
from bct.config.loader import training_settings
from bct.config.methods import load_method_cfg, method_names, method_title
from bct.evaluation.metrics import compatibility_scores, meets_bct_criterion
from bct.evaluation.report import backfill_curve_table, markdown_table, set_title
from bct.pipeline.configs import derive
from bct.pipeline.evaluation import evaluate
from bct.pipeline.plots import backfill_plot, self_cross_plot
from bct.pipeline.pretrained import pretrained_start
from bct.pipeline.records import STATISTICS_KEYS, statistics_read
from bct.pipeline.results import write_result
from bct.pipeline.stats import class_stats
from bct.pipeline.train import train_run
from bct.utils.errors import BadInputError
from bct.utils import keys
from bct.utils.fileio import jsonable, write_json_atomic, write_text_atomic
from bct.utils.logger import log_file

DEFAULT_SETS = "rparis6k,roxford5k,gldv2"
# Set per seed by the comparison itself (--seeds, --out), so not accepted as overrides.
_OWN_KEYS = ("SEED", "OUTPUT")
# Overrides that describe the benchmark's models, not the pretrained start: their class counts and
# checkpoints, and their training recipe (the start has its own, in pretrain.yml, as ImageNet weights
# do not change with the recipe of the models that load them). The rest applies to the pretraining
# run too: input size, data, device, threads, and the keys that size a run to its data and device
# (TRAIN.BATCH_SIZE, TRAIN.MAX_ITERS).
START_OWN_KEYS = ("OLD_MODEL.", "NEW_MODEL.", "SEED", "TRAIN.EPOCHS", "TRAIN.OPTIMIZER.", "TRAIN.LR_SCHEDULER.",
                  "TRAIN.CLIP_GRAD")


def default_out(config_dir: str) -> str:
    return os.path.join("output", "compare", os.path.relpath(config_dir, "configs").replace(os.sep, "_"))


class Setting:
    """The configs of a setting folder (old_model.yml, extract_feat.yml, test_model.yml, the methods'
    new-model configs, pretrain.yml), each loaded once with the user's overrides."""

    def __init__(self, config_dir: str, opts=()):
        opts = list(opts)
        if len(opts) % 2:
            raise BadInputError(f"overrides come as KEY VALUE pairs; {opts[-1]} has no value")
        for key in opts[0::2]:
            if key in _OWN_KEYS:
                raise BadInputError(f"{key} is set by the comparison (SEED by --seeds, OUTPUT by --out); "
                                    "drop it from the overrides")
        if not os.path.isdir(config_dir):
            raise BadInputError(f"--config-dir {config_dir} is not a folder of configs")
        self.dir, self.opts, self.user_keys = config_dir, opts, set(opts[0::2])
        self._cache = {}
        self.starts = {}
        self.file("old_model.yml")  # bad overrides fail now, before anything is written

    def _load(self, name: str, loader):
        if name not in self._cache:
            self._cache[name] = self._with_starts(loader())
        return self._cache[name]

    def _with_starts(self, cfg):
        values = {f"{sec}.PRETRAINED_PATH": self.starts[cfg[sec].PRETRAINED_PATH] for sec in ("OLD_MODEL", "NEW_MODEL")
                  if cfg[sec].PRETRAINED_PATH in self.starts}
        return derive(cfg, values) if values else cfg

    def file(self, name: str):
        return self._load(name, lambda: load_cfg(os.path.join(self.dir, name), self.opts))

    def method(self, method: str):
        return self._load(f"method:{method}", lambda: load_method_cfg(self.dir, method, list(self.opts)))

    def for_run(self, cfg, seed: int, run_dir: str, **values):
        """``cfg`` for one seed: its seed, output folder and feature cache (unless overridden), and ``values``."""
        own = {"SEED": seed, "OUTPUT": run_dir, "EVAL.CACHE_DIR": os.path.join(run_dir, "feature_cache")}
        own = {k: v for k, v in own.items() if k not in self.user_keys}
        return derive(cfg, {**own, **values})

    def make_starts(self) -> None:
        """The shared pretrained start (synthetic counterpart of ImageNet) of the folder's models when the
        folder has a pretrain.yml: one per architecture, where the models' *.PRETRAINED_PATH names it,
        or, when the overrides change the start's key, in its own file that the models then load."""
        path = os.path.join(self.dir, "pretrain.yml")
        if not os.path.isfile(path):
            return
        starts = {}
        for cfg in (self.file("old_model.yml"), self.method("oracle")):
            for sec in (cfg.OLD_MODEL, cfg.NEW_MODEL):
                if sec.PRETRAINED and sec.PRETRAINED_PATH:
                    if starts.setdefault(sec.PRETRAINED_PATH, sec.ARCH) != sec.ARCH:
                        raise BadInputError(f"{self.dir}: {sec.PRETRAINED_PATH} is the pretrained start of both "
                                            f"{starts[sec.PRETRAINED_PATH]} and {sec.ARCH}; give each its own file")
        pairs = list(zip(self.opts[0::2], self.opts[1::2]))
        shared = [x for k, v in pairs if not k.startswith(START_OWN_KEYS) for x in (k, v)]
        published = {}
        for target, arch in starts.items():
            cfg = load_cfg(path, [*shared, "OLD_MODEL.ARCH", arch])
            plain = load_cfg(path, ["OLD_MODEL.ARCH", arch])
            # The configured file holds the start of pretrain.yml as it is; other settings get their own file.
            own = training_settings(cfg, drop_tag=True) != training_settings(plain, drop_tag=True)
            published[target] = pretrained_start(cfg, target, keyed=own)
        self._cache.clear()
        self.starts = {k: v for k, v in published.items() if v != k}


def old_model_values(method_cfg) -> dict:
    """{key: value} that a method's own old model takes from the method's config (METHOD.OLD_MODEL_KEYS,
    e.g. the fixed d-Simplex classifier); empty when the method uses the setting's shared old model."""
    return {k: keys.get(method_cfg, k) for k in method_cfg.METHOD.OLD_MODEL_KEYS}


def old_model_run(setting: Setting, seed: int, run_dir: str, method: str = "", need_stats: bool = True):
    """Train (or reuse) an old model and its class statistics: the setting's shared one, or with
    ``method`` that method's own (old_model.yml with the method's METHOD.OLD_MODEL_KEYS, in its own
    folder). Returns (run, statistics folder or "")."""
    values = old_model_values(setting.method(method)) if method else {}
    base = setting.file("old_model.yml")
    if values:
        values["TAG"] = f"{base.TAG}_{method}"
    stats = os.path.join(run_dir, "old_stats" if not values else f"old_stats_{method}")
    old = train_run(setting.for_run(base, seed, run_dir, **values), resume=True, reuse=True,
                    name=f"old ({method})" if values else "old")
    if not need_stats:
        return old, ""
    extract = {k: v for k, v in values.items() if k != "TAG"}
    class_stats(setting.for_run(setting.file("extract_feat.yml"), seed, run_dir, **extract,
                                **{"OLD_MODEL.MODEL_PATH": old.path, "EXTRACT.SAVE_DIR": stats}), reuse=True)
    return old, stats


def train_models(setting: Setting, methods, seed: int, run_dir: str, logger) -> tuple:
    """Old model, its statistics, the oracle and every method of one seed: (old path, {method: path},
    {name: seconds}, statistics folder, {method: its own old model's path} for the methods with
    METHOD.OLD_MODEL_KEYS)."""
    old, stats = old_model_run(setting, seed, run_dir)
    paths, times, own_old, trained = {}, {"old": old.seconds}, {}, {}
    for m in ["oracle", *methods]:
        m_old, m_stats = old, stats
        if old_model_values(setting.method(m)):
            m_old, m_stats = old_model_run(setting, seed, run_dir, m,
                                           need_stats=bool(statistics_read(setting.method(m))))
            own_old[m], times[f"old ({m})"] = m_old.path, m_old.seconds
        inputs = {"OLD_MODEL.MODEL_PATH": m_old.path}
        if m_stats:
            inputs.update({STATISTICS_KEYS[0]: os.path.join(m_stats, "radius.json"),
                           STATISTICS_KEYS[1]: os.path.join(m_stats, "angle.json")})
        cfg = setting.for_run(setting.method(m), seed, run_dir, **inputs)
        same = trained.get(training_settings(cfg, drop_tag=True))
        if same:
            # A method whose new model trains exactly as an earlier one (FastFill's is the oracle's): that model.
            paths[m], times[m] = paths[same], 0.0
            logger.info(f"[{m}] its new model trains as {same}'s: {paths[same]}")
            continue
        run = train_run(cfg, resume=True, reuse=True, name=m)
        paths[m], times[m] = run.path, run.seconds
        trained[training_settings(cfg, drop_tag=True)] = m
    return old.path, paths, times, stats, own_old


def method_test_cfg(cfg, method_cfg):
    """The evaluation config ``cfg`` with the embedding sizes of a method's models (a wider BT2
    embedding, the d-Simplex's own size), which the checkpoints are checked against."""
    values = {k: keys.get(method_cfg, k) for k in ("MODEL.EMB_DIM", "NEW_MODEL.EXTRA_DIMS")
              if keys.get(method_cfg, k) != keys.get(cfg, k)}
    return derive(cfg, values) if values else cfg


def run_seed(setting: Setting, methods, sets: list, seed: int, run_dir: str, logger, device) -> dict:
    """Train and evaluate everything of one seed (everything it writes stays under ``run_dir``; each
    model's results and rankings in ``run_dir/eval/<old|oracle|method>/``, for the report page)."""
    old_path, paths, times, _, own_old = train_models(setting, methods, seed, run_dir, logger)

    def evaluate_saved(name, new, old, eval_cfg=None, **kwargs):
        results = evaluate(eval_cfg or cfg, sets, new, old, device, rankings=True, **kwargs)
        for r in results.values():
            write_result(os.path.join(run_dir, "eval", name), r)
        return results

    cfg = setting.for_run(setting.file("test_model.yml"), seed, run_dir)
    names = [n for n, _ in sets]
    res = {"seed": seed, "train_seconds": times, "backfill_seed": cfg.EVAL.BACKFILL_SEED, "old_self": {},
           "oracle_self": {}, "oracle_cross": {}, "methods": {}, "curves": {}, "sets": {}}
    for ds, r in evaluate_saved("old", old_path, "").items():
        res["old_self"][ds] = r["headline"]["self"]
        res["sets"][ds] = {"title": r["title"], "headline_name": r["headline_name"]}
    # The oracle's cross-test is the no-compatibility reference: about chance.
    for ds, r in evaluate_saved("oracle", paths["oracle"], old_path).items():
        res["oracle_self"][ds], res["oracle_cross"][ds] = r["headline"]["self"], r["headline"]["cross"]
    for m in methods:
        entry = res["methods"].setdefault(m, {"self": {}, "cross": {}})
        m_cfg = method_test_cfg(cfg, setting.method(m))
        if m in own_old:
            # The method trains its own old model (METHOD.OLD_MODEL_KEYS): its cross-test and scores are
            # measured against that model's gallery and self-test.
            entry["own_old"] = {"path": own_old[m], "self": {}}
            for ds, r in evaluate(m_cfg, sets, own_old[m], "", device, check=()).items():
                entry["own_old"]["self"][ds] = r["headline"]["self"]
        for ds, r in evaluate_saved(m, paths[m], own_old.get(m, old_path), eval_cfg=m_cfg, backfill=True).items():
            entry["self"][ds], entry["cross"][ds] = r["headline"]["self"], r["headline"]["cross"]
            res["curves"].setdefault(m, {})[ds] = r["backfill"]
        if setting.method(m).METHOD.TRANSFORMATION:
            entry["fastfill"] = fastfill_entry(setting, m, m_cfg, seed, run_dir, own_old.get(m, old_path), paths[m],
                                               sets, device, logger)
            # Its cross-test searches the transformed old gallery; its curve is the uncertainty order's.
            for ds, f in entry["fastfill"].items():
                entry["cross"][ds] = f["curves"]["uncertainty"][0][1]
                res["curves"][m][ds] = f["curves"]["uncertainty"]
    for ds in names:
        logger.info(f"[seed {seed}] {ds}: old {res['old_self'][ds]:.2f}, oracle {res['oracle_self'][ds]:.2f}, " +
                    ", ".join(f"{m} {res['methods'][m]['self'][ds]:.2f}/{res['methods'][m]['cross'][ds]:.2f}"
                              for m in methods))
    for m in methods:
        e = res["methods"][m]
        old_self = e["own_old"]["self"] if "own_old" in e else res["old_self"]
        e["scores"] = compatibility_scores(old_self, res["oracle_self"], e["self"], e["cross"])
        e["bct_criterion"] = {ds: meets_bct_criterion(old_self[ds], e["self"][ds], e["cross"][ds]) for ds in names}
    return res


def fastfill_entry(setting: Setting, method: str, cfg, seed: int, run_dir: str, old_path: str, new_path: str, sets,
                   device, logger) -> dict:
    """FastFill's transformation of (old, new) trained on ``method``'s training list, and its backfill
    curves per order on every set (``cfg``: the evaluation's config): {set: {"curves": {order: curve},
    "auc": {order: area}}}."""
    from bct.evaluation.sets import build_set
    from bct.pipeline.evaluation import load_for_eval
    from bct.pipeline.fastfill import backfill_orders, train_transformation

    train_cfg = setting.for_run(setting.method(method), seed, run_dir)
    h = train_transformation(train_cfg, old_path, new_path, os.path.join(run_dir, f"fastfill_{method}"), device, logger)
    new_model, _, new_digest = load_for_eval(cfg, "new", new_path, device)
    old_model, _, old_digest = load_for_eval(cfg, "old", old_path, device)
    out = {}
    for name, root in sets:
        bset = build_set(name, root, cfg)
        out[bset.name] = backfill_orders(cfg, bset, old_model, new_model, h, device,
                                         digests={"old": old_digest, "new": new_digest})
        logger.info(f"[{method}] {bset.name}: backfill AUC " +
                    ", ".join(f"{o} {a:.2f}" for o, a in out[bset.name]["auc"].items()))
    return out


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
        if "own_old" in per_seed[0]["methods"][m]:  # the method's own old model (METHOD.OLD_MODEL_KEYS)
            e["own_old_self"] = {ds: _mean_std([r["methods"][m]["own_old"]["self"][ds] for r in per_seed])
                                 for ds in datasets}
        for ds in datasets:
            ratios = [p[0] for p in per_seed[0]["curves"][m][ds]]
            e["curves"][ds] = [(ratio,) + _mean_std([r["curves"][m][ds][i][1] for r in per_seed])
                               for i, ratio in enumerate(ratios)]
    return agg


def _pm(ms):
    return f"{ms[0]:.2f} ± {ms[1]:.2f}"


def _labels(per_seed: list) -> tuple:
    """(title, headline name) functions of the sets of a comparison."""
    labels = per_seed[0].get("sets") or {} if per_seed else {}
    return (lambda d: labels.get(d, {}).get("title") or set_title(d),
            lambda d: labels.get(d, {}).get("headline_name") or "headline mAP")


def seeds_table(agg: dict, methods, datasets, set_title=set_title) -> str:
    head = (["Method"] + [f"{set_title(d)} (self / cross)" for d in datasets] +
            ["P_up", "P_comp", "P_1", "Gain %"])
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, key in (("Old", "old_self"), ("Oracle", "oracle_self")):
        lines.append("| " + " | ".join([name] + [f"{_pm(agg[key][d])} / —" for d in datasets] + ["—"] * 4) + " |")
    for m in methods:
        e = agg["methods"][m]
        cells = [f"{_pm(e['self'][d])} / {_pm(e['cross'][d])}" for d in datasets]
        s = e["scores"]
        cells += [_pm(s["P_up"]), _pm(s["P_comp"]), _pm(s["P_1"]), _pm((100 * s["gain"][0], 100 * s["gain"][1]))]
        lines.append("| " + " | ".join([method_title(m)] + cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(per_seed: list, config_dir: str, methods, datasets, out: str) -> dict:
    """results.md, results.json, backfill.png and self_cross.png of a comparison in ``out``."""
    methods, datasets = list(methods), list(datasets)
    title = method_title
    set_title, headline_name = _labels(per_seed)
    agg = aggregate(per_seed, methods, datasets)
    one = len(per_seed) == 1
    md = [f"# Compatibility comparison ({config_dir}, seeds {', '.join(str(r['seed']) for r in per_seed)})", "",
          "Headline numbers x100: " + ", ".join(f"{headline_name(d)} for {set_title(d)}" for d in datasets) +
          "; cells read self-test M(new, new) / cross-test M(new, old).", ""]
    if one:
        r = per_seed[0]
        rows = [{"method": title(m), "self": r["methods"][m]["self"], "cross": r["methods"][m]["cross"]} for m in methods]
        md.append(markdown_table(rows, datasets, r["old_self"], r["oracle_self"]))
    else:
        md.append(seeds_table(agg, methods, datasets, set_title))

    def value(values):  # one seed: the number; several: mean ± std
        return f"{values[0]:.2f}" if one else _pm(_mean_std(values))

    own = [m for m in methods if "own_old" in per_seed[0]["methods"][m]]
    if own:
        md += ["", "Methods that train their own old model (METHOD.OLD_MODEL_KEYS); their cross-test, scores and "
               "criterion are measured against it. Its self-test: " + "; ".join(
                   f"{title(m)} " + ", ".join(f"{set_title(d)} {value([r['methods'][m]['own_old']['self'][d] for r in per_seed])}"
                                             for d in datasets) for m in own)]
    md += ["", "Oracle cross-test M(oracle, old), the no-compatibility reference: " +
           ", ".join(f"{set_title(d)} {value([r['oracle_cross'][d] for r in per_seed])}" for d in datasets)]
    md += ["", "BCT criterion (cross > old self and new self > old self), per dataset" +
           (":" if one else ", in the mean over seeds (and on how many seeds):"), ""]
    for m in methods:
        cells = []
        for ds in datasets:
            held = sum(bool(r["methods"][m]["bct_criterion"][ds]) for r in per_seed)
            if one:
                cells.append(f"{set_title(ds)} {'yes' if held else 'no'}")
                continue
            a = agg["methods"][m]  # (mean, std) per dataset
            in_mean = meets_bct_criterion(agg["old_self"][ds][0], a["self"][ds][0], a["cross"][ds][0])
            cells.append(f"{set_title(ds)} {'yes' if in_mean else 'no'} ({held} of {len(per_seed)} seeds)")
        md.append(f"- {title(m)}: " + ", ".join(cells))
    # How far each cross-test is above the no-compatibility level, and how far the old model is.
    mean = {k: {d: float(np.mean([r[k][d] for r in per_seed])) for d in datasets} for k in ("old_self", "oracle_cross")}
    md += ["", "Above the no-compatibility level (smallest ratio over the sets, means over seeds): old self-test / "
           "oracle cross-test " + f"{min(mean['old_self'][d] / mean['oracle_cross'][d] for d in datasets):.1f}x; "
           "cross-test / oracle cross-test: " + ", ".join(
               f"{title(m)} {min(np.mean([r['methods'][m]['cross'][d] for r in per_seed]) / mean['oracle_cross'][d] for d in datasets):.1f}x"
               for m in methods)]
    for ds in datasets:
        md += ["", f"Partial backfill on {set_title(ds)} ({headline_name(ds)} x100 of new queries; "
               f"per-image refresh, seed {per_seed[0]['backfill_seed']}{'' if one else '; mean over seeds'}):", ""]
        md.append(backfill_curve_table({title(m): [(c[0], c[1]) for c in agg["methods"][m]["curves"][ds]]
                                        for m in methods}))
    for m in [m for m in methods if "fastfill" in per_seed[0]["methods"][m]]:
        orders = list(next(iter(per_seed[0]["methods"][m]["fastfill"].values()))["auc"])
        md += ["", f"{title(m)}: partial backfill of the transformed gallery, area under the curve (mean "
               f"{'' if one else 'over seeds '}of the curve's headline x100 over the ratios) per backfill order:", "",
               "| Set | " + " | ".join(orders) + " |", "|" + " --- |" * (len(orders) + 1)]
        for ds in datasets:
            md.append(f"| {set_title(ds)} | " + " | ".join(
                value([r["methods"][m]["fastfill"][ds]["auc"][o] for r in per_seed]) for o in orders) + " |")
    times = {k: _mean_std([r["train_seconds"][k] for r in per_seed]) for k in per_seed[0]["train_seconds"]}
    md += ["", "Training time (s): " + ", ".join(f"{title(k)} {v[0]:.0f}" for k, v in times.items())]
    pngs = [os.path.join(out, "backfill.png"), os.path.join(out, "self_cross.png")]
    labels = per_seed[0].get("sets")
    backfill_plot(agg, methods, datasets, pngs[0], len(per_seed), labels)
    self_cross_plot(agg, methods, datasets, pngs[1], len(per_seed), labels)
    md += ["", *[f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in pngs]]
    text = "\n".join(md) + "\n"
    write_text_atomic(os.path.join(out, "results.md"), text)
    write_json_atomic(os.path.join(out, "results.json"), jsonable({"per_seed": per_seed, "aggregate": agg,
                                                                   "train_seconds": times}), indent=1)
    return {"markdown": text, "aggregate": agg, "pngs": pngs}


def default_methods() -> list:
    """The methods of a comparison when none are named: the paper's (bct.config.methods.PAPER_ORDER)."""
    from bct.config.methods import PAPER_ORDER
    return [m for m in method_names(include_oracle=False) if m in PAPER_ORDER]


def check_methods(methods) -> list:
    """The compatible methods asked for, checked against the catalogue (the oracle always runs); "all"
    names every method of the catalogue."""
    known = method_names(include_oracle=False)
    if list(methods) == ["all"]:
        return known
    for m in methods:
        if m not in known:
            raise BadInputError(f"--methods: unknown method {m!r}; the methods are {', '.join(known)} "
                                "(the oracle always runs)")
    if len(set(methods)) != len(methods):
        raise BadInputError(f"--methods names a method twice: {','.join(methods)}")
    return list(methods)


def compare(config_dir: str, methods=None, sets=None, seeds=(1234,), out: str = "", opts=(), fresh: bool = False):
    """Run the comparison (see the module docstring) into ``out``; returns the report
    {"markdown", "aggregate", "pngs"}. ``sets``: [(name, root or None)]."""
    from bct.engine.distributed import init_distributed
    from bct.evaluation.sets import parse_set_specs

    methods = check_methods(methods or default_methods())
    sets = sets or parse_set_specs(DEFAULT_SETS)
    seeds = list(seeds)
    if len(set(seeds)) != len(seeds):
        raise BadInputError(f"--seeds names a seed twice: {','.join(map(str, seeds))}")
    setting = Setting(config_dir, opts)
    out = out or default_out(config_dir)
    if fresh and os.path.isdir(out):
        shutil.rmtree(out)
    with log_file(out) as logger:
        device = init_distributed("auto", "auto")
        start = time.time()
        setting.make_starts()
        per_seed = [run_seed(setting, methods, sets, s, os.path.join(out, f"seed{s}"), logger, device) for s in seeds]
        report = write_report(per_seed, config_dir, methods, [n for n, _ in sets], out)
        logger.info("\n" + report["markdown"])
        logger.info(f"comparison written to {out}/results.md (+ results.json, backfill.png, self_cross.png) "
                    f"in {time.time() - start:.0f}s")
    return report
