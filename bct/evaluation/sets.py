"""Benchmark sets: one interface for every family of retrieval benchmark (docs/evaluation.md).

Three families, each a ``BenchmarkSet``:

- ``revisited``: ROxford5k, RParis6k and any set in their revisitop format (the synthetic sets, the
  validation set ``synval``): Easy / Medium / Hard mAP and mP@1/5/10; headline Medium mAP.
- ``gldv2``: the GLDv2 retrieval lists (one gallery, public and private queries): mAP@k
  (k = EVAL.TOPK); headline private mAP@k.
- ``own``: a user's own labelled query / gallery folder (bct/data/retrieval_set.py): mAP over all
  positives, mAP@k, Recall@1/5/10; headline mAP.

``parse_set_specs`` reads the command-line form, ``build_set`` makes a set (the family follows
from the files found), ``evaluate_models`` runs the self-test M(new, new), the cross-test
M(new, old) (new-model queries against the old-model gallery, which is never re-embedded), the old
self-test and the partial backfill on any set, and ``compatibility_matrix`` every (query model,
gallery model) pair of a model sequence. Scores are fractions; headlines and report values x100.

With ``keep_rankings`` a result also carries, per test, the top of every query's ranking, the
relevance of each entry and the query's headline AP, taken from the very ranking that was scored
(the report page shows them; bct.pipeline.results writes them beside the result).
"""
from __future__ import annotations

import os
import re

import numpy as np

from bct.data.gldv2 import USAGES, load_gldv2_retrieval
from bct.data.retrieval_set import is_retrieval_set, load_retrieval_set, manifest_path
from bct.data.revisited import PROTOCOLS, gnd_path, load_revisited
from bct.evaluation.extract import embed_images
from bct.models.build import compatible_part
from bct.evaluation.metrics import (compute_map_revisited, format_revisited, gldv2_ap_at_k, mean_retrieval_scores,
                                    retrieval_scores)
from bct.evaluation.report import partial_backfill_gallery, set_title
from bct.evaluation.search import rank_matrix, search
from bct.utils.errors import BadInputError
from bct.utils.logger import get_logger

FAMILIES = ("revisited", "gldv2", "own")
LEVELS = PROTOCOLS
RECALL_KS = (1, 5, 10)
# Names whose missing files get the revisited loader's "download it from revisitop" message.
REVISITED_NAMES = ("roxford5k", "rparis6k")
GLDV2_GALLERY = "gldv2_gallery_list.txt"
PARTS = {"self": "self-test  M(new, new)", "cross": "cross-test M(new, old)", "old_self": "old self   M(old, old)"}
# At most this many ranked entries (queries x gallery) are scored at once by an own set.
_RANK_BUDGET = 1 << 21
# How much of each query's ranking a result keeps when asked to (evaluate_models' keep_rankings).
RANKINGS_TOP = 100
# Relevance codes of the kept ranking entries; each family names the ones it uses (RELEVANCE).
WRONG, POSITIVE, HARD, JUNK = 0, 1, 2, 3
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+-]*$")
_EXAMPLE = "e.g. rparis6k,roxford5k,gldv2 or shoes=data/shoes/eval"


# ---------------------------------------------------------------------------------------------
# The command-line form
# ---------------------------------------------------------------------------------------------

def _check_name(name: str, item: str, flag: str) -> None:
    if "." in name or (name.isupper() and _NAME.match(name)):
        raise BadInputError(f"{flag}: {item!r} is not NAME or NAME=ROOT ({_EXAMPLE}); it looks like a config key: "
                            "put KEY VALUE overrides after the flags")
    if not _NAME.match(name):
        raise BadInputError(f"{flag}: {item!r} is not NAME or NAME=ROOT ({_EXAMPLE}); a name is letters, digits, "
                            "'_', '+' or '-'")


def _name_of_path(path: str) -> str:
    folder = os.path.dirname(manifest_path(path)) if is_retrieval_set(path) else path
    return os.path.basename(os.path.normpath(os.path.abspath(folder)))


def parse_set_specs(text: str, flag: str = "--datasets") -> list:
    """The sets of one comma-separated argument, as ``[(name, root or None), ...]``.

    An item is a built-in name (``roxford5k``, ``rparis6k``, ``gldv2``, ``synval``, any revisited
    set under EVAL.ROOT: root None, ``build_set`` takes it from the config) or ``NAME=PATH`` (a
    user's own set folder, or the root of a revisited / GLDv2-format set). An item that is an
    existing path as a whole is a path even if it contains '=' or '/' (its name is its folder's
    name). Names are unique; a bad item is a one-line BadInputError naming ``flag``.
    """
    out = []
    for item in (x.strip() for x in str(text).split(",")):
        if not item:
            continue
        if ("=" in item or os.sep in item or "/" in item) and os.path.exists(item):
            name, root = _name_of_path(item), item
            if not _NAME.match(name):
                raise BadInputError(f"{flag}: {item!r} is a path whose folder name {name!r} is no set name; "
                                    f"give one as NAME={item}")
        elif "=" in item:
            name, _, root = (x.strip() for x in item.partition("="))
            if not root:
                raise BadInputError(f"{flag}: {item!r} has no path after '='; give NAME=PATH ({_EXAMPLE})")
            if not name:
                raise BadInputError(f"{flag}: {item!r} has no name before '='; give NAME=PATH ({_EXAMPLE})")
            _check_name(name, item, flag)
        else:
            name, root = item, None
            _check_name(name, item, flag)
        if name in (n for n, _ in out):
            raise BadInputError(f"{flag}: the set name {name!r} is given twice; every set needs its own name")
        out.append((name, root))
    if not out:
        raise BadInputError(f"{flag} is empty; give the sets to evaluate, {_EXAMPLE}")
    return out


# ---------------------------------------------------------------------------------------------
# The families
# ---------------------------------------------------------------------------------------------

class ImageGroup:
    """A list of images embedded together: absolute ``paths``, optional crop ``boxes``, and the
    ``list_name`` that error messages cite."""

    def __init__(self, paths: list, list_name: str, boxes: list | None = None):
        self.paths, self.list_name, self.boxes = paths, list_name, boxes


class BenchmarkSet:
    """A retrieval benchmark: a gallery, one or more query groups, and how a ranking is scored.

    ``name`` (the results file is ``<name>.json``), ``root``, ``family`` (one of FAMILIES),
    ``title`` (for tables), ``headline_name`` (what the headline number is, e.g. "Medium mAP"),
    ``gallery`` (an ImageGroup). Subclasses define ``query_groups``, ``describe``, ``score_ranked``,
    ``headline_of``, ``backfill_detail``, ``metrics`` and ``format_part``, and say in ``RELEVANCE``
    what each relevance code of a kept ranking means and in ``ap_name`` which AP a query's is.
    """

    family = ""
    RELEVANCE: dict = {}
    ap_name = "AP"

    def __init__(self, name: str, root: str, title: str, headline_name: str, gallery: ImageGroup):
        self.name, self.root, self.title, self.headline_name = name, root, title, headline_name
        self.gallery = gallery

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, root={self.root!r})"

    def query_groups(self, cfg) -> dict:
        """{key: ImageGroup} of the queries under ``cfg`` (e.g. with crop boxes)."""
        raise NotImplementedError

    def describe(self, cfg) -> dict:
        """The fields a result carries about the set and the protocol."""
        raise NotImplementedError

    def score(self, queries: dict, gallery: np.ndarray, backend: str) -> dict:
        """Scores (fractions) of query features {key: (n_q, D)} against gallery features (n_db, D)."""
        return self.score_ranked(queries, gallery, backend, 0)[0]

    def score_ranked(self, queries: dict, gallery: np.ndarray, backend: str, keep: int) -> tuple:
        """(``score``'s scores, the kept ranking or None when ``keep`` is 0). The kept ranking of the
        queries (every group, in ``query_groups`` order): ``{'ids': (n_q, t) gallery indices, best first,
        t = min(keep, n_db, the depth the family searches), 'rel': (n_q, t) int8 relevance codes
        (RELEVANCE), 'ap': (n_q,) the headline AP of each query (NaN: no positive)}``."""
        raise NotImplementedError

    def headline_of(self, part: dict) -> float:
        """The headline number x100 of one ``score`` result."""
        raise NotImplementedError

    def backfill_detail(self, points: list):
        """The family's full partial-backfill curve from [(ratio, score result), ...]."""
        raise NotImplementedError

    def metrics(self, part: dict) -> dict:
        """{metric label: value x100 or None (not available)} of one ``score`` result, in print order."""
        raise NotImplementedError

    def format_part(self, part: dict) -> str:
        """One line of one ``score`` result."""
        raise NotImplementedError

    def notes(self, result: dict) -> list:
        """Lines that say what a result leaves out (protocols or queries without positives)."""
        return []

    def metric_rows(self, result: dict) -> list:
        """``[{'test': 'self' | 'cross' | 'old_self', 'name': words, 'metrics': self.metrics(...)}]``
        for the tests present in ``result`` (for reports)."""
        return [{"test": key, "name": words, "metrics": self.metrics(result[key])}
                for key, words in PARTS.items() if key in result]

    def report_lines(self, result: dict) -> list:
        """The lines the test tool prints for ``result``: one per test, the backfill curve, the notes."""
        lines = [f"{PARTS[key]}: {self.format_part(result[key])}" for key in PARTS if key in result]
        if result.get("backfill"):
            curve = " ".join(f"{ratio:.2f}:{value:.2f}" for ratio, value in result["backfill"])
            lines.append(f"partial backfill (ratio:{self.headline_name}, seed {result['backfill_seed']}): {curve}")
        return lines + self.notes(result)


class RevisitedSet(BenchmarkSet):
    """ROxford5k / RParis6k or another revisitop-format set ``<root>/<name>/``."""

    family = "revisited"
    RELEVANCE = {POSITIVE: "easy", HARD: "hard", JUNK: "junk (not scored)", WRONG: "wrong"}
    ap_name = "Medium AP"

    def __init__(self, name: str, root: str):
        self.data = load_revisited(name, root)
        label = os.path.join(root, name)
        super().__init__(name, root, set_title(name), "Medium mAP",
                         ImageGroup(self.data.db_paths, f"{label} database"))
        self.query_list = f"{label} queries"
        self.protocols = {level: self.data.protocol(level) for level in LEVELS}
        if self.data.empty_levels:
            get_logger().warning(f"{self.data.gnd_file}: no query has a positive image under the "
                                 f"{self._levels_words()} protocol; its scores are reported as n/a")

    def _levels_words(self) -> str:
        return " and ".join(level.capitalize() for level in self.data.empty_levels)

    def query_groups(self, cfg) -> dict:
        boxes = self.data.crop_boxes() if cfg.EVAL.QUERY_CROP else None
        return {"": ImageGroup(self.data.query_paths, self.query_list, boxes)}

    def describe(self, cfg) -> dict:
        out = {"n_query": len(self.data.query_paths), "n_db": len(self.data.db_paths),
               "protocol": "crop queries to bbx" if cfg.EVAL.QUERY_CROP else "paper (no query crop)",
               "resize": cfg.EVAL.RESIZE}
        if self.data.empty_levels:
            out["not_available"] = list(self.data.empty_levels)
        return out

    def score_ranked(self, queries, gallery, backend, keep):
        ranks = rank_matrix(queries[""], gallery, backend)
        part = compute_map_revisited(ranks, self.protocols)
        if not keep:
            return part, None
        ids = np.ascontiguousarray(ranks[:keep].T)
        rel = np.zeros(ids.shape, np.int8)
        for q, g in enumerate(self.data.checked_gnd):
            # Later codes win: an image listed as junk and as a positive counts as positive (metrics).
            for code, key in ((JUNK, "junk"), (HARD, "hard"), (POSITIVE, "easy")):
                rel[q, np.isin(ids[q], g[key])] = code
        return part, {"ids": ids, "rel": rel, "ap": part["medium"]["aps"]}

    def headline_of(self, part):
        return 100.0 * part["medium"]["map"]

    def backfill_detail(self, points):
        return [{"ratio": ratio, **{level: part[level]["map"] for level in LEVELS}} for ratio, part in points]

    def metrics(self, part):
        out = {f"{level.capitalize()} mAP": _x100(part[level]["map"]) for level in LEVELS}
        for level in LEVELS:
            out.update({f"{level.capitalize()} mP@{k}": _x100(part[level]["mp"][k]) for k in part["kappas"]})
        return out

    def format_part(self, part):
        return format_revisited(part)

    def notes(self, result):
        if not self.data.empty_levels:
            return []
        return [f"n/a: no query has a positive image under the {self._levels_words()} protocol"]


class GLDv2Set(BenchmarkSet):
    """The GLDv2 retrieval lists in ``root`` (bct/data/gldv2.py): public and private queries."""

    family = "gldv2"
    RELEVANCE = {POSITIVE: "relevant", WRONG: "not relevant"}

    def __init__(self, name: str, root: str, k: int):
        self.splits = {usage: load_gldv2_retrieval(root, usage) for usage in USAGES}
        self.k = int(k)
        super().__init__(name, root, set_title(name), f"private mAP@{self.k}",
                         ImageGroup(self.splits["public"].gallery_paths, os.path.join(root, GLDV2_GALLERY)))
        self.ap_name = f"AP@{self.k}"

    def query_groups(self, cfg) -> dict:
        return {usage: ImageGroup(split.query_paths, os.path.join(self.root, f"gldv2_{usage}_query_list.txt"))
                for usage, split in self.splits.items()}

    def describe(self, cfg) -> dict:
        return {"n_db": len(self.gallery.paths), "k": self.k,
                "n_query": {usage: len(split.query_paths) for usage, split in self.splits.items()}}

    def score_ranked(self, queries, gallery, backend, keep):
        out, kept = {}, []
        for usage, split in self.splits.items():
            _, ids = search(queries[usage], gallery, self.k, backend)
            aps = gldv2_ap_at_k({q: ids[q].tolist() for q in range(ids.shape[0])}, split.solution, self.k)
            out[usage] = sum(aps.tolist()) / len(aps)
            if keep:
                top = ids[:, :keep]
                rel = np.full(top.shape, WRONG, np.int8)
                for q in range(top.shape[0]):
                    rel[q, np.isin(top[q], split.solution[q])] = POSITIVE
                kept.append({"ids": top, "rel": rel, "ap": aps})
        if not keep:
            return out, None
        return out, {key: np.concatenate([k[key] for k in kept]) for key in ("ids", "rel", "ap")}

    def headline_of(self, part):
        return 100.0 * part["private"]

    def backfill_detail(self, points):
        return {usage: [{"ratio": ratio, "map": part[usage]} for ratio, part in points] for usage in self.splits}

    def metrics(self, part):
        return {f"{usage} mAP@{self.k}": _x100(part[usage]) for usage in self.splits}

    def format_part(self, part):
        return f"mAP@{self.k} public {100 * part['public']:.2f} private {100 * part['private']:.2f}"


class OwnSet(BenchmarkSet):
    """A user's own retrieval set (bct/data/retrieval_set.py): the folder ``root`` or its set.json."""

    family = "own"
    RELEVANCE = {POSITIVE: "same label", JUNK: "the query itself (not scored)", WRONG: "other label"}

    def __init__(self, name: str, root: str, k: int):
        self.data = load_retrieval_set(root)
        self.k = int(k)
        super().__init__(name, root, name, "mAP", ImageGroup(self.data.gallery_paths, self.data.gallery_list))
        self.n_no_positive = int((self.data.n_pos == 0).sum())
        if self.n_no_positive:
            get_logger().warning(f"{self.data.folder}: {self._no_positive_words()}")

    def _no_positive_words(self) -> str:
        n = len(self.data.query_paths)
        return (f"{self.n_no_positive} of {n} queries have no positive in the gallery (no other gallery image "
                f"with their label); they are left out of every mean")

    def query_groups(self, cfg) -> dict:
        return {"": ImageGroup(self.data.query_paths, self.data.query_list)}

    def describe(self, cfg) -> dict:
        return {"n_query": len(self.data.query_paths), "n_db": len(self.data.gallery_paths), "k": self.k,
                "no_positive_queries": self.n_no_positive, "set_folder": self.data.folder,
                "resize": cfg.EVAL.RESIZE}

    def score_ranked(self, queries, gallery, backend, keep):
        query = queries[""]
        step = max(1, _RANK_BUDGET // max(gallery.shape[0], 1))
        parts, tops = [], []
        for start in range(0, query.shape[0], step):
            stop = start + step
            _, ids = search(query[start:stop], gallery, None, backend)
            parts.append(retrieval_scores(ids, self.data.query_labels[start:stop], self.data.gallery_labels,
                                          self.data.self_index[start:stop], self.k, RECALL_KS))
            if keep:
                tops.append(ids[:, :keep])
        per_query = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        scores = mean_retrieval_scores(per_query, RECALL_KS)
        if not keep:
            return scores, None
        ids = np.concatenate(tops)
        rel = np.where(self.data.gallery_labels[ids] == self.data.query_labels[:, None], POSITIVE, WRONG)
        rel[ids == self.data.self_index[:, None]] = JUNK
        return scores, {"ids": ids, "rel": rel.astype(np.int8), "ap": per_query["ap"]}

    def headline_of(self, part):
        return 100.0 * part["map"]

    def backfill_detail(self, points):
        return [{"ratio": ratio, **part} for ratio, part in points]

    def metrics(self, part):
        return {"mAP": _x100(part["map"]), f"mAP@{self.k}": _x100(part["map_at_k"]),
                **{f"R@{r}": _x100(part["recall"][r]) for r in RECALL_KS}}

    def format_part(self, part):
        return " ".join(f"{label} {'n/a' if value is None else f'{value:.2f}'}"
                        for label, value in self.metrics(part).items())

    def notes(self, result):
        return [self._no_positive_words()] if self.n_no_positive else []


def _x100(value):
    return None if value is None or np.isnan(value) else 100.0 * float(value)


def _default_root(name: str, cfg) -> str:
    return cfg.EVAL.GLDV2_ROOT if name == "gldv2" else cfg.EVAL.ROOT


def detect_family(name: str, root: str | None) -> str:
    """The family of set ``name`` at ``root`` from the files there (module docstring); a bare name
    (root None) is ``gldv2`` for "gldv2" and ``revisited`` otherwise."""
    if root is None:
        return "gldv2" if name == "gldv2" else "revisited"
    if is_retrieval_set(root):
        return "own"
    if os.path.isfile(gnd_path(name, root)):
        return "revisited"
    if os.path.isfile(os.path.join(root, GLDV2_GALLERY)) or name == "gldv2":
        return "gldv2"
    if name in REVISITED_NAMES:
        return "revisited"
    if not os.path.exists(root):
        raise BadInputError(f"set {name}: {root} does not exist")
    if os.path.isfile(root):
        raise BadInputError(f"set {name}: {root} is a file; give the set's folder (the one holding set.json) or "
                            "its set.json")
    raise BadInputError(f"set {name}: no benchmark set in {root}: expected {os.path.join(root, 'set.json')} (your own "
                        f"retrieval set, docs/evaluation.md), {os.path.join(root, name, f'gnd_{name}.pkl')} (revisitop "
                        f"format) or {os.path.join(root, GLDV2_GALLERY)} (GLDv2 format)")


def build_set(name: str, root: str | None, cfg, family: str | None = None) -> BenchmarkSet:
    """The set ``name`` at ``root`` (None: EVAL.GLDV2_ROOT for gldv2, EVAL.ROOT otherwise), its data
    read and checked now. ``family`` forces one of FAMILIES instead of ``detect_family``. The mAP@k
    of the gldv2 and own families uses k = ``cfg.EVAL.TOPK``."""
    if family is None:
        family = detect_family(name, root or None)
    root = root or _default_root(name, cfg)
    if family == "revisited":
        return RevisitedSet(name, root)
    if family == "gldv2":
        return GLDv2Set(name, root, cfg.EVAL.TOPK)
    if family == "own":
        return OwnSet(name, root, cfg.EVAL.TOPK)
    raise BadInputError(f"set {name}: unknown family {family!r}; expected one of {', '.join(FAMILIES)}")


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------

def _embed_gallery(cfg, bset, model, device, digest: str):
    return embed_images(cfg, model, bset.gallery.paths, "gallery", device, digest, list_name=bset.gallery.list_name)


def _embed_queries(cfg, groups: dict, model, device):
    feats, bad = {}, 0
    for key, group in groups.items():
        feats[key], n_bad = embed_images(cfg, model, group.paths, "query", device, boxes=group.boxes,
                                         list_name=group.list_name)
        bad += n_bad
    return feats, bad


def evaluate_models(cfg, bset: BenchmarkSet, new_model, old_model=None, device="cpu", *, with_old_self: bool = True,
                    backfill: bool = False, digests: dict | None = None, use_cache: bool = True,
                    keep_rankings: int = 0) -> dict:
    """Self-test of ``new_model`` on ``bset``; with ``old_model`` also the cross-test, the old
    self-test (``with_old_self``) and the partial-backfill curve (``backfill``: EVAL.BACKFILL_RATIOS,
    EVAL.BACKFILL_SEED).

    ``digests``: {"new": ..., "old": ...} checkpoint digests that key the gallery-feature cache
    (with ``use_cache`` and EVAL.USE_CACHE). Returns ``{'dataset': name, 'title', 'family',
    'headline_name', <the set's describe fields>, 'skipped_images', 'self', 'cross', 'old_self'
    (family-specific scores, fractions), 'headline': {test: x100}, 'backfill': [(ratio, headline
    x100), ...], 'backfill_detail': the family's full curve, 'backfill_seed'}`` (the tests run only).

    ``keep_rankings`` > 0 adds ``'rankings': {'top', 'tests': {test: the kept ranking of
    BenchmarkSet.score_ranked}, 'relevance': {code: words}, 'ap_name', 'query_paths' (every query
    group's, in order), 'query_groups' (the group of each query), 'gallery_paths'}``.
    """
    digests = (digests if use_cache else None) or {}
    backend = cfg.EVAL.SEARCH_BACKEND
    groups = bset.query_groups(cfg)
    gallery_new, bad_gallery = _embed_gallery(cfg, bset, new_model, device, digests.get("new", ""))
    query_new, bad_query = _embed_queries(cfg, groups, new_model, device)
    out = {"dataset": bset.name, "title": bset.title, "family": bset.family, "headline_name": bset.headline_name,
           **bset.describe(cfg), "skipped_images": bad_gallery + bad_query}
    kept = {}

    def run(test, queries, gallery):
        out[test], ranking = bset.score_ranked(queries, gallery, backend, keep_rankings)
        if ranking is not None:
            kept[test] = ranking

    run("self", query_new, gallery_new)
    # BT2: a wider new embedding meets an old gallery with its old-compatible part (its first
    # compatible_dims, normalised again); other models' embeddings are used as they are.
    meta = getattr(new_model, "meta", None) or {}
    query_compat = {k: compatible_part(v, meta) for k, v in query_new.items()} if meta else query_new
    if old_model is not None:
        gallery_old, _ = _embed_gallery(cfg, bset, old_model, device, digests.get("old", ""))
        run("cross", query_compat, gallery_old)
        if with_old_self:
            query_old, _ = _embed_queries(cfg, groups, old_model, device)
            run("old_self", query_old, gallery_old)
    out["headline"] = {key: bset.headline_of(out[key]) for key in PARTS if key in out}
    if kept:
        out["rankings"] = {"top": int(kept["self"]["ids"].shape[1]), "tests": kept,
                           "relevance": dict(bset.RELEVANCE), "ap_name": bset.ap_name,
                           "query_paths": [p for g in groups.values() for p in g.paths],
                           "query_groups": [key for key, g in groups.items() for _ in g.paths],
                           "gallery_paths": bset.gallery.paths}
    if old_model is not None and backfill:
        points = []
        # A partly backfilled gallery keeps the old row size: a BT2 model's refreshed rows hold their
        # compatible part until every row is refreshed (ratio 1: the full new embedding).
        gallery_compat = compatible_part(gallery_new, meta) if meta else gallery_new
        for ratio in cfg.EVAL.BACKFILL_RATIOS:
            if float(ratio) >= 1.0:
                points.append((float(ratio), out["self"]))
                continue
            mixed, _ = partial_backfill_gallery(gallery_old, gallery_compat, float(ratio), cfg.EVAL.BACKFILL_SEED)
            points.append((float(ratio), bset.score(query_compat, mixed, backend)))
        out["backfill"] = [(ratio, bset.headline_of(part)) for ratio, part in points]
        out["backfill_detail"] = bset.backfill_detail(points)
        out["backfill_seed"] = cfg.EVAL.BACKFILL_SEED
    return out


def compatibility_matrix(cfg, bset: BenchmarkSet, models: list, device="cpu", digests: list | None = None) -> dict:
    """Every (query model i, gallery model j <= i) pair on ``bset``.

    ``models``: oldest first; ``digests``: their checkpoint digests (keys of the gallery-feature
    cache, EVAL.USE_CACHE). Each model embeds the queries and the gallery once; every pair is then a
    search. Returns ``{'dataset', 'pairs': {(i, j): scores as in evaluate_models' 'self'},
    'matrix': (n, n) headline numbers x100, NaN above the diagonal}``.
    """
    digests = digests if cfg.EVAL.USE_CACHE and digests else [""] * len(models)
    backend = cfg.EVAL.SEARCH_BACKEND
    groups = bset.query_groups(cfg)
    gallery = [_embed_gallery(cfg, bset, m, device, d)[0] for m, d in zip(models, digests)]
    queries = [_embed_queries(cfg, groups, m, device)[0] for m in models]
    n = len(models)
    pairs = {(i, j): bset.score(queries[i], gallery[j], backend) for i in range(n) for j in range(i + 1)}
    matrix = np.full((n, n), np.nan)
    for (i, j), part in pairs.items():
        matrix[i, j] = bset.headline_of(part)
    return {"dataset": bset.name, "pairs": pairs, "matrix": matrix}


def scores_headline(part: dict) -> float:
    """The headline x100 of one family's scores, read from their shape (for results that do not
    carry a ``headline``): private mAP@k (gldv2), Medium mAP (revisited), mAP (own)."""
    if "private" in part:
        return 100.0 * part["private"]
    if "medium" in part:
        return 100.0 * part["medium"]["map"]
    if "map" in part:
        return 100.0 * part["map"]
    raise BadInputError(f"scores {sorted(part)} are of no known benchmark family")


def headline(result: dict, part: str) -> float:
    """The headline number x100 of ``result[part]`` (part "self", "cross" or "old_self") for any family."""
    stored = result.get("headline") or {}
    if stored.get(part) is not None:
        return float(stored[part])
    return scores_headline(result[part])


__all__ = ["FAMILIES", "RANKINGS_TOP", "BenchmarkSet", "RevisitedSet", "GLDv2Set", "OwnSet", "parse_set_specs", "build_set",
           "detect_family", "evaluate_models", "compatibility_matrix", "headline", "scores_headline"]
