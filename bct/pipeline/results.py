"""Reading and summarising test results (the <set>.json files that the test tool writes).

A folder of results is read only when it is one model's results: one file per set, every file of
the same new and old model (by digest where recorded, else by path), every headline a number in
[0, 100]; a folder that mixes is refused with one line naming the two files (``mixed=True`` accepts
results of different models, never two results for one set).

Beside a result ``<set>.json`` its rankings may lie in ``<set>.rankings.npz`` (``write_result``): per
test (self, cross, old_self) the top of every query's ranking as the evaluation scored it, the
relevance of each entry and each query's headline AP, plus the image paths they refer to. The result
names the file and its sha256, so a rankings file of another run is never read as this one's.
"""
import json
import math
import os

import numpy as np

from bct.evaluation.metrics import meets_bct_criterion
from bct.evaluation.report import markdown_table, set_title
from bct.utils.errors import BadInputError, rerun_hint
from bct.utils.fileio import atomic_path, file_digest, jsonable, read_text, write_json_atomic

ORDER = ("rparis6k", "roxford5k", "gldv2")
RANKINGS_SUFFIX = ".rankings.npz"
SUMMARY_TITLE = "Headline mAP x100 (Medium for revisited sets, private mAP@100 for GLDv2):"


def summary_table(results: dict) -> str:
    head = ["Dataset", "old self", "new self", "cross (new→old)", "BCT criterion", "self gain", "cross gain"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, r in results.items():
        h = r["headline"]
        old, new, cross = h.get("old_self"), h["self"], h.get("cross")
        if old is None or cross is None:
            lines.append(f"| {r.get('title') or set_title(name)} | — | {new:.2f} | — | — | — | — |")
            continue
        ok = meets_bct_criterion(old, new, cross)
        lines.append(f"| {r.get('title') or set_title(name)} | {old:.2f} | {new:.2f} | {cross:.2f} | "
                     f"{'met' if ok else 'not met'} | {new - old:+.2f} | {cross - old:+.2f} |")
    return "\n".join(lines) + "\n"


def criterion_advice(old: float, new: float, cross: float, split: str = "", held: str = "", start: str = "") -> list:
    """What to try when the BCT criterion fails on a user's collection (scripts/own.sh): at most two
    lines, none when it holds. ``split``/``held``: the preparation's --split/--query; ``start``: own.sh's
    START without ImageNet weights (empty with them). The knobs are those whose effect on a real set
    docs/own_images.md measured ("When the criterion fails")."""
    if meets_bct_criterion(old, new, cross):
        return []
    first = []
    if split == "class" or held == "classes":
        first.append('hold out images and give the old model part of every class (PREPARE_ARGS="--split data --query '
                     'images"), the choice for few classes')
    if start == "random" or start == "pretext":
        first.append("start the new model from the old one (START=old, the default without ImageNet weights)")
    second = ("train both longer (TRAIN.EPOCHS 16) or from local ImageNet weights (WEIGHTS=<file>); "
              "docs/own_images.md, \"When the criterion fails\", has the measured effect of each knob")
    if new <= old:
        second = "the new model does not beat the old one: " + second
    return (["try: " + "; ".join(first)] if first else []) + [second]


def _rerun(path: str) -> str:
    return f"run bct.tools.test again to rewrite {os.path.basename(path)}"


def read_result(path: str):
    """A test result JSON, checked: None for a JSON file that is not a test result (no "headline");
    a one-line error for a truncated file or a headline that is not a number in [0, 100]."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise BadInputError(f"{path}: not valid JSON (line {e.lineno}: {e.msg}); the file is truncated or "
                            f"edited: {_rerun(path)}") from None
    if not isinstance(data, dict) or "headline" not in data:
        return None
    head = data["headline"]
    if not isinstance(data.get("dataset"), str) or not isinstance(head, dict) or "self" not in head:
        raise BadInputError(f"{path}: expected \"dataset\" (a name) and \"headline\" with at least \"self\"; "
                            f"{_rerun(path)}")
    for key, value in head.items():
        if type(value) not in (int, float) or not math.isfinite(value):
            raise BadInputError(f"{path}: headline.{key} is {json.dumps(value)}, expected a number (mAP x100); the "
                                f"run that wrote it could not score it: {_rerun(path)}")
        if not 0 <= value <= 100:
            raise BadInputError(f"{path}: headline.{key} is {value:g}, outside [0, 100] (mAP x100); the file was "
                                f"edited or written by something else: {_rerun(path)}")
    return data


def _model_id(data: dict, role: str):
    models = data.get("models")
    if isinstance(models, dict) and isinstance(models.get(role), dict) and models[role].get("sha256"):
        return "sha256 " + str(models[role]["sha256"])[:12]
    path = data.get(f"{role}_model")
    return os.path.normpath(path) if isinstance(path, str) and path else None


def load_results(folder: str, mixed: bool = False) -> dict:
    """{set name: result} of one model's results folder (see the module docstring)."""
    if os.path.isfile(folder):
        raise BadInputError(f"{folder} is a file; give the folder of test results (EVAL.SAVE_DIR)")
    if not os.path.isdir(folder):
        raise BadInputError(f"{folder} does not exist; run bash scripts/test.sh first")
    found, files = {}, {}
    for name in sorted(os.listdir(folder), key=lambda n: (ORDER.index(n[:-5]) if n[:-5] in ORDER else 9, n)):
        if not name.endswith(".json"):
            continue
        data = read_result(os.path.join(folder, name))
        if data is None:
            continue
        ds = data["dataset"]
        if ds in found:
            raise BadInputError(f"{folder} holds two results for {ds}: {files[ds]} and {name}; keep one (move the "
                                "other out of the folder)")
        for role in ("new", "old"):
            first = next(iter(found.values()), None)
            if first is not None and not mixed and _model_id(first, role) != _model_id(data, role):
                other = files[first["dataset"]]
                raise BadInputError(f"{folder}: {other} and {name} are results of different {role} models "
                                    f"({_model_id(first, role)} vs {_model_id(data, role)}); test one model per "
                                    "folder, or pass --mixed to show them together")
        found[ds], files[ds] = data, name
    if not found:
        raise BadInputError(f"{folder} holds no test results (<dataset>.json from bct.tools.test)")
    return found


def _named(spec: str) -> tuple:
    if os.path.isdir(spec):
        return os.path.basename(os.path.normpath(spec)), spec
    name, sep, folder = spec.partition("=")
    return (name, folder) if sep else (os.path.basename(os.path.normpath(spec)), spec)


def _same_old_model(r: dict, oracle: dict) -> bool:
    """Whether a result was measured against the oracle's old model: equal old self-tests when both
    have one (the same model and settings give the same number), else the same checkpoint."""
    a, b = r["headline"].get("old_self"), oracle["headline"].get("old_self")
    if a is not None and b is not None:
        return abs(a - b) < 1e-6
    return _model_id(r, "old") == _model_id(oracle, "old")


def paper_table(oracle_folder: str, method_specs: list, mixed: bool = False) -> str:
    """The paper's table of the new models in ``method_specs`` (FOLDER or NAME=FOLDER), with the
    old model's self-test and the oracle's self-test taken from the oracle's results."""
    oracle = load_results(oracle_folder, mixed)
    datasets = [d for d in oracle if "old_self" in oracle[d]["headline"]]
    if not datasets:
        raise BadInputError(f"{oracle_folder}: the oracle's results lack the old model's self-test; test it with "
                            "OLD_MODEL.MODEL_PATH set and EVAL.OLD_SELF True")
    old_self = {d: oracle[d]["headline"]["old_self"] for d in datasets}
    oracle_self = {d: oracle[d]["headline"]["self"] for d in datasets}
    rows, criterion = [], []
    for spec in method_specs:
        name, folder = _named(spec)
        res = {d: r for d, r in load_results(folder, mixed).items() if d in datasets}
        for d, r in res.items():
            if not _same_old_model(r, oracle[d]):
                raise BadInputError(f"{folder}/{d}.json was not tested against the oracle's old model "
                                    f"({r.get('old_model')!r} vs {oracle[d].get('old_model')!r} in {oracle_folder}, "
                                    "or other EVAL settings); test every model against the same old model")
        row = {"method": name, "self": {d: r["headline"]["self"] for d, r in res.items()},
               "cross": {d: r["headline"]["cross"] for d, r in res.items() if "cross" in r["headline"]}}
        rows.append(row)
        met = [f"{set_title(d)} " + ("yes" if meets_bct_criterion(old_self[d], row["self"][d], c) else "no")
               for d, c in row["cross"].items()]
        criterion.append(f"- {name}: " + (", ".join(met) or "no cross-test (OLD_MODEL.MODEL_PATH was empty)"))
    try:
        table = markdown_table(rows, datasets, old_self, oracle_self)
    except ValueError as e:
        raise BadInputError(f"{oracle_folder}: {e}") from None
    return (table + "\nBCT criterion (cross > old self and new self > old self), per dataset:\n\n"
            + "\n".join(criterion) + "\n")


def refuse_other_models_result(path: str, models: dict) -> None:
    """Refuse writing a result at ``path`` over one of other models (``models``: role -> checkpoint path)."""
    if not os.path.isfile(path):
        return
    try:
        data = json.loads(read_text(path))
    except (ValueError, BadInputError):
        return  # a broken file is no result: it is replaced
    if not isinstance(data, dict):
        return
    for role, ckpt in models.items():
        now = "sha256 " + file_digest(ckpt)[:12] if ckpt and os.path.isfile(ckpt) else None
        before = _model_id(data, role)
        if before is not None and before.startswith("sha256 ") and now is not None and before != now:
            raise BadInputError(f"{path} holds the result of another {role} model ({before}, now {now}); a run never "
                                "writes over another's result: " + rerun_hint("give another --out (EVAL.SAVE_DIR) or move it away"))


def _blob(strings) -> np.ndarray:
    """Strings as one uint8 array (newline-joined UTF-8): compact in an .npz, read back without pickle."""
    return np.frombuffer("\n".join(strings).encode("utf-8"), np.uint8)


def _strings(blob) -> list:
    text = bytes(np.asarray(blob, np.uint8)).decode("utf-8")
    return text.split("\n") if text else []


def write_result(folder: str, result: dict) -> str:
    """Write ``result`` (bct.pipeline.evaluate's) to ``folder/<set>.json``; its kept rankings, if any,
    first to ``folder/<set>.rankings.npz`` (only the gallery paths they refer to), which the JSON then
    names with its sha256. Both atomically. Returns the JSON's path."""
    os.makedirs(folder, exist_ok=True)
    result = dict(result)
    rankings = result.pop("rankings", None)
    name = result["dataset"]
    if rankings:
        tests = rankings["tests"]
        used = np.unique(np.concatenate([t["ids"].ravel() for t in tests.values()])).astype(np.int64)
        paths = rankings["gallery_paths"]
        arrays = {"query_paths": _blob(rankings["query_paths"]), "query_groups": _blob(rankings["query_groups"]),
                  "gallery_ids": used, "gallery_paths": _blob(paths[i] for i in used.tolist())}
        for test, t in tests.items():
            arrays.update({f"{test}_ids": np.asarray(t["ids"], np.int64), f"{test}_rel": np.asarray(t["rel"], np.int8),
                           f"{test}_ap": np.asarray(t["ap"], np.float64)})
        npz = os.path.join(folder, name + RANKINGS_SUFFIX)
        with atomic_path(npz) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **arrays)
        result["rankings"] = {"file": os.path.basename(npz), "sha256": file_digest(npz), "top": rankings["top"],
                              "tests": list(tests), "ap_name": rankings["ap_name"],
                              "relevance": {str(k): v for k, v in rankings["relevance"].items()}}
    path = os.path.join(folder, f"{name}.json")
    write_json_atomic(path, jsonable(result), indent=1)
    return path


def load_rankings(folder: str, result: dict) -> dict:
    """The rankings that ``write_result`` kept for ``result`` (read from ``folder``): ``{'top', 'ap_name',
    'relevance': {code: words}, 'query_paths', 'query_groups', 'gallery': {gallery index: path},
    'tests': {test: {'ids': (n_q, top), 'rel': (n_q, top), 'ap': (n_q,)}}}``. A result without
    rankings, a missing file or one of another run is refused with one line."""
    where = os.path.join(folder, f"{result['dataset']}.json")
    info = result.get("rankings")
    if not isinstance(info, dict) or not info.get("file"):
        raise BadInputError(f"{where} keeps no rankings (it was written before they were kept, or by another "
                            f"tool): {_rerun(where)}")
    path = os.path.join(folder, os.path.basename(str(info["file"])))
    if not os.path.isfile(path):
        raise BadInputError(f"{where} names its rankings {path}, which does not exist: {_rerun(where)}")
    if file_digest(path) != info.get("sha256"):
        raise BadInputError(f"{path} is not the rankings file that {where} was written with (its sha256 differs); "
                            f"{_rerun(where)}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {key: z[key] for key in z.files}
        tests = {test: {part: arrays[f"{test}_{part}"] for part in ("ids", "rel", "ap")} for test in info["tests"]}
        gallery = dict(zip(arrays["gallery_ids"].tolist(), _strings(arrays["gallery_paths"])))
        queries, groups = _strings(arrays["query_paths"]), _strings(arrays["query_groups"])
    except (KeyError, ValueError, OSError) as e:
        raise BadInputError(f"{path}: not a rankings file of bct ({type(e).__name__}: {e}); {_rerun(where)}") from None
    return {"top": int(info["top"]), "ap_name": info.get("ap_name", "AP"),
            "relevance": {int(k): v for k, v in info.get("relevance", {}).items()}, "query_paths": queries,
            "query_groups": groups, "gallery": gallery, "tests": tests}
