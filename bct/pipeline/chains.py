"""Model generations (docs/generations.md): chains of trainings in which generation t+1 is trained
with a method against generation t as its old model, on a growing nested split, and the
compatibility matrix of every chain.

Generation 1 is the setting folder's old model (old_model.yml, its statistics from extract_feat.yml),
shared by every chain, except for a method with METHOD.OLD_MODEL_KEYS (the fixed d-Simplex classifier),
whose chain starts from its own old model. Generation t >= 2 of the chain of method m is the method's new-model config;
per generation only the training list (the nested split ``gldv2_train_nested_<P>percent_<class|data>.txt``
next to the old model's list), the class counts, the old model (generation t-1: checkpoint,
architecture) and its statistics (extracted from generation t-1 on generation t-1's list) change;
architecture, schedule, sizes, pretrained start and method settings come from the folder's files.
"""
import os
import re
import time
from dataclasses import dataclass

import numpy as np

from bct.data.lists import read_image_list
from bct.data.prepare import check_fractions, nested_list_name, percent_tag
from bct.config.methods import method_title
from bct.evaluation.report import matrix_table
from bct.pipeline import records
from bct.pipeline.comparison import Setting, check_methods, default_out, old_model_run, old_model_values
from bct.pipeline.matrix import FILES, HEADLINE, evaluate_models, summarize, write_report
from bct.pipeline.plots import matrix_heatmaps
from bct.pipeline.stats import class_stats
from bct.pipeline.train import train_run
from bct.utils.errors import BadInputError
from bct.utils.fileio import jsonable, write_json_atomic, write_text_atomic
from bct.utils.logger import log_file

# Methods of a chain when none are given: the paper's method and the classic baseline.
DEFAULT_METHODS = ("advbct", "bct")
_OLD_LIST = re.compile(r"^gldv2_train_old_([0-9.]+)percent_(class|data)\.txt$")


@dataclass(frozen=True)
class Generation:
    """A trained model of a chain, as the next generation's old model sees it."""

    path: str
    arch: str
    num_classes: int
    stats: str


def chain_fractions(generations: int, fractions, old_list: str) -> tuple:
    """(fractions, split) of a chain whose generation 1 trains on ``old_list``.

    The old list must be ``gldv2_train_old_<P>percent_<class|data>.txt``: P is the first fraction and
    the nested lists lie next to it. Without ``fractions``, generation t < N gets t times the first
    fraction and the last generation everything (N = 3 and a 30% old model: 0.3, 0.6, 1.0).
    """
    match = _OLD_LIST.match(os.path.basename(old_list))
    if not match:
        raise BadInputError(f"generation 1 trains on {old_list}, not on a gldv2_train_old_<P>percent_<class|data>.txt "
                            "list; the nested lists of the chain are looked up next to that file")
    first, split = round(float(match.group(1)) / 100, 6), match.group(2)
    if fractions:
        fractions = check_fractions(fractions)
        if len(fractions) < 2:
            raise BadInputError(f"--fractions {','.join(f'{f:g}' for f in fractions)} gives one generation; a chain "
                                f"needs at least two (e.g. {first:g},1.0)")
        if fractions[0] != first:
            raise BadInputError(f"--fractions starts at {fractions[0]:g} but generation 1 trains on {old_list} "
                                f"({first:g}); the first fraction is the old model's")
        if generations and len(fractions) != generations:
            raise BadInputError(f"--generations {generations} but --fractions lists {len(fractions)} fractions")
        return fractions, split
    if generations < 2:
        raise BadInputError(f"--generations {generations}: a chain needs at least two generations")
    fractions = tuple(round(first * t, 6) for t in range(1, generations)) + (1.0,)
    if fractions[-2] >= 1.0:
        raise BadInputError(f"--generations {generations} with a {first:g} old split does not fit t x {first:g} "
                            "below 100%; give the fractions with --fractions")
    return check_fractions(fractions), split


def generation_lists(old_list: str, fractions, split: str) -> list:
    """[(list path, number of classes)] of every generation; generation 1's nested list must be the
    old model's list (same seed and preparation)."""
    folder = os.path.dirname(old_list)
    out = []
    for f in fractions:
        path = os.path.join(folder, nested_list_name(f, split))
        if not os.path.isfile(path):
            raise BadInputError(
                f"{path} does not exist: write the nested splits with `python -m bct.tools.prepare_gldv2 --root "
                f"{folder} --fractions {','.join(f'{x:g}' for x in fractions)}` (make_synthetic takes --fractions too)")
        _, labels = read_image_list(path, "")
        out.append((path, int(labels.max()) + 1))
    with open(old_list, "rb") as a, open(out[0][0], "rb") as b:
        if a.read() != b.read():
            raise BadInputError(f"{out[0][0]} differs from generation 1's list {old_list}; prepare both in one run "
                                "(same seed and source) with --fractions")
    return out


def train_chain(setting: Setting, method: str, first: Generation, lists: list, chain_tag: str, seed: int,
                run_dir: str) -> tuple:
    """Train generations 2.. of one chain; returns ([checkpoint of every generation], {name: seconds})."""
    base = setting.method(method)
    prev, paths, times = first, [first.path], {}
    for t, (list_path, num_classes) in enumerate(lists[1:], start=2):
        name = f"{method} gen{t}"
        stats_of_prev = {"COMP_LOSS.RADIUS_FILE": os.path.join(prev.stats, "radius.json") if prev.stats else "",
                         "COMP_LOSS.ANGLE_FILE": os.path.join(prev.stats, "angle.json") if prev.stats else ""}
        cfg = setting.for_run(base, seed, run_dir, **{
            "TRAIN.LIST_FILE": list_path, "NEW_MODEL.NUM_CLASSES": num_classes, "OLD_MODEL.MODEL_PATH": prev.path,
            "OLD_MODEL.ARCH": prev.arch, "OLD_MODEL.NUM_CLASSES": prev.num_classes, **stats_of_prev,
            "TAG": f"{base.TAG}_{chain_tag}_gen{t}"})
        run = train_run(cfg, resume=True, reuse=True, name=name)
        times[name] = run.seconds
        stats = ""
        if t < len(lists) and records.statistics_read(cfg):
            stats = os.path.join(run_dir, "chain_stats", f"{method}_{chain_tag}_gen{t}")
            class_stats(setting.for_run(setting.file("extract_feat.yml"), seed, run_dir, **{
                "OLD_MODEL.MODEL_PATH": run.path, "OLD_MODEL.ARCH": cfg.NEW_MODEL.ARCH,
                "OLD_MODEL.NUM_CLASSES": num_classes, "TRAIN.LIST_FILE": list_path,
                "TRAIN.INPUT_SIZE": cfg.TRAIN.INPUT_SIZE, "EXTRACT.SAVE_DIR": stats}), reuse=True)
        prev = Generation(run.path, cfg.NEW_MODEL.ARCH, num_classes, stats)
        paths.append(run.path)
    return paths, times


def _transitivity(chain: str, report: dict) -> list:
    """One line per set on the pairs (i, j) with i - j >= 2, which no training linked directly."""
    lines = []
    for ds, e in report["datasets"].items():
        names = [m["name"] for m in report["models"]]
        far = [c for c in e["criterion"] if names.index(c["query"]) - names.index(c["gallery"]) >= 2]
        if far:
            cells = ", ".join(f"{c['query']}→{c['gallery']} {c['value']:.2f} vs {c['reference']:.2f} "
                              f"{'✓' if c['met'] else '✗'}" for c in far)
            lines.append(f"- {method_title(chain)}, {e['title']}: {cells}")
    return lines


def generations(config_dir: str, generations: int = 0, fractions=None, methods=None, sets=None, seed: int = 1234,
                out: str = "", opts=(), fresh: bool = False) -> dict:
    """Train every chain, evaluate their matrices and write the report into <out>/generations."""
    import shutil

    from bct.engine.distributed import init_distributed
    from bct.evaluation.sets import parse_set_specs
    from bct.pipeline.comparison import DEFAULT_SETS

    methods = check_methods(methods or list(DEFAULT_METHODS))
    sets = sets or parse_set_specs(DEFAULT_SETS)
    setting = Setting(config_dir, opts)
    out = out or default_out(config_dir)
    run_dir, report_dir = os.path.join(out, f"seed{seed}"), os.path.join(out, "generations")
    old_cfg = setting.for_run(setting.file("old_model.yml"), seed, run_dir)
    old_list = old_cfg.TRAIN.LIST_FILE
    fractions, split = chain_fractions(generations, fractions, old_list)
    lists = generation_lists(old_list, fractions, split)
    if lists[0][1] != old_cfg.OLD_MODEL.NUM_CLASSES:
        raise BadInputError(f"{os.path.join(config_dir, 'old_model.yml')}: OLD_MODEL.NUM_CLASSES is "
                            f"{old_cfg.OLD_MODEL.NUM_CLASSES} but generation 1's list {lists[0][0]} has "
                            f"{lists[0][1]} classes")
    if fresh and os.path.isdir(out):
        shutil.rmtree(out)
    chain_tag = "chain" + "_".join(percent_tag(f) for f in fractions)
    with log_file(out) as logger:
        device = init_distributed("auto", "auto")
        start = time.time()
        logger.info(f"[generations] {split} split, fractions {', '.join(f'{f:g}' for f in fractions)}: "
                    f"{', '.join(str(n) for _, n in lists)} classes")
        setting.make_starts()
        old_cfg = setting.for_run(setting.file("old_model.yml"), seed, run_dir)
        old = train_run(old_cfg, resume=True, reuse=True, name="old")
        stats = os.path.join(run_dir, "old_stats")
        class_stats(setting.for_run(setting.file("extract_feat.yml"), seed, run_dir,
                                    **{"OLD_MODEL.MODEL_PATH": old.path, "EXTRACT.SAVE_DIR": stats}), reuse=True)
        first = Generation(old.path, old_cfg.OLD_MODEL.ARCH, old_cfg.OLD_MODEL.NUM_CLASSES, stats)
        chains, times = {}, {"old gen1": old.seconds}
        for method in ["oracle", *methods]:
            gen1 = first
            if old_model_values(setting.method(method)):
                # A method that changes how the old model trains (METHOD.OLD_MODEL_KEYS, e.g. the fixed
                # d-Simplex classifier) starts its chain from its own generation 1.
                own, own_stats = old_model_run(setting, seed, run_dir, method,
                                               need_stats=bool(records.statistics_read(setting.method(method))))
                gen1 = Generation(own.path, first.arch, first.num_classes, own_stats)
                times[f"old gen1 ({method})"] = own.seconds
            chains[method], t = train_chain(setting, method, gen1, lists, chain_tag, seed, run_dir)
            times.update(t)

        cfg = setting.for_run(setting.file("test_model.yml"), seed, run_dir)
        names = [f"gen{t} ({percent_tag(f)}%)" for t, f in enumerate(fractions, start=1)]
        reports, oracle_self = {}, None
        for method, paths in chains.items():
            models = list(zip(names, paths))
            results = evaluate_models(cfg, models, sets, device)
            if method == "oracle":
                oracle_self = {ds: [None] + [float(r["matrix"][t, t]) for t in range(1, len(paths))]
                               for ds, r in results.items()}
            reports[method] = summarize(models, results, None if method == "oracle" else oracle_self,
                                        None if method == "oracle" else dict(zip(names[1:], chains["oracle"][1:])))
            write_report(os.path.join(report_dir, method), reports[method],
                         f"{method_title(method)} chain: compatibility matrix of {len(paths)} generations")
        wall = time.time() - start
        text = generations_markdown(config_dir, seed, fractions, split, lists, reports, times, wall)
        write_text_atomic(os.path.join(report_dir, "results.md"), text)
        write_json_atomic(os.path.join(report_dir, "results.json"), jsonable(
            {"config_dir": config_dir, "seed": seed, "split": split, "fractions": fractions,
             "classes": [n for _, n in lists], "lists": [p for p, _ in lists], "chains": reports,
             "train_seconds": times, "wall_seconds": wall}), indent=1)
        matrix_heatmaps([[{"title": f"{method_title(m)}: {e['title']}", "names": names,
                           "matrix": e["matrix"]} for e in r["datasets"].values()] for m, r in reports.items()],
                        os.path.join(report_dir, "heatmaps.png"))
        logger.info("\n" + text)
        logger.info(f"generations written to {report_dir}/results.md (+ results.json, heatmaps.png, one folder per "
                    f"chain) in {wall:.0f}s")
    return {"reports": reports, "markdown": text, "wall_seconds": wall}


def generations_markdown(config_dir, seed, fractions, split, lists, reports: dict, times: dict, wall: float) -> str:
    """The report of a generations run: the summary of every chain, the pairs no training linked
    directly, every matrix, and the times."""
    title = method_title
    first = next(iter(reports.values()))["datasets"]
    datasets, titles = list(first), {ds: e["title"] for ds, e in first.items()}
    md = [f"# Model generations ({config_dir}, seed {seed})", "",
          f"{len(fractions)} generations on nested {split} splits of "
          f"{' → '.join(f'{percent_tag(f)}%' for f in fractions)} ({' → '.join(str(n) for _, n in lists)} classes). "
          "Generation 1 is the old model of every chain; in the chain of a method, generation t+1 is trained "
          "with that method against generation t; the oracle chain trains every generation without a "
          "compatibility term. " + HEADLINE, "",
          "| Chain | " + " | ".join(f"{titles[ds]} AC / AMA" for ds in datasets) +
          " | mean AC | mean AMA | " + " | ".join(f"P_1 gen{t}→gen{t + 1}" for t in range(1, len(fractions))) + " |",
          "|" + " --- |" * (len(datasets) + 3 + len(fractions) - 1)]
    for m, r in reports.items():
        p1 = {c["new"]: f"{c['P_1']:.2f}" for c in r["consecutive"]}
        names = [x["name"] for x in r["models"]]
        md.append(f"| {title(m)} | " +
                  " | ".join(f"{r['datasets'][ds]['AC']:.2f} / {r['datasets'][ds]['AMA']:.2f}" for ds in datasets) +
                  f" | {r['AC']:.2f} | {r['AMA']:.2f} | " + " | ".join(p1.get(n, "—") for n in names[1:]) + " |")
    far = [line for m, r in reports.items() for line in _transitivity(m, r)]
    if far:
        md += ["", "Pairs that no training linked directly (query generation i, gallery generation j <= i - 2): "
               "M[i][j] vs M[j][j], ✓ when the newer model searches the older gallery better than the older model "
               "itself:", "", *far]
    for m, r in reports.items():
        names = [x["name"] for x in r["models"]]
        md += ["", f"## {title(m)} chain", ""]
        for ds, e in r["datasets"].items():
            md += [f"{e['title']} ({e['headline_name']} x100):", "", matrix_table(names, e["matrix"]).rstrip(), ""]
        md.append(f"Per-chain files: [{m}/{FILES[1]}]({m}/{FILES[1]}), {m}/{FILES[0]}, {m}/{FILES[2]}.")
    md += ["", "Training time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items() if not np.isnan(v)),
           "", f"Wall time of the run: {wall:.0f} s.", "", "![heat-maps](heatmaps.png)"]
    return "\n".join(md) + "\n"
