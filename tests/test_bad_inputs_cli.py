"""Bad values on every flag of every entry point, found by discovery rather than listed: the tools
(pkgutil over bct.tools) and the benchmark scripts (benchmarks/*.py that run as scripts) each expose
``build_parser()``; every action of every parser (sub-commands included) has a kind declared in
bct.tools.common, and from that kind alone the values a user could get wrong are made (negative,
zero, non-numeric, huge, a missing file, a folder for a file, a file for a folder, an unknown
choice). Each must end in exit code 2 and one stderr line naming the flag, with nothing written and
nothing changed (the prepared inputs, a real index among them, compare equal before and after).

Then the class of outputs over inputs: for every pair (output flag, input flag) of a parser, the
output pointed at the input itself, through a symlink, inside it, or around it is refused in the
parse step, and the input is left as it was.

The cases run in this process through bct.tools.common.run, as `python -m` / `python benchmarks/...`
run them; a small sample runs as real processes. A flag added to any tool, or a new tool, is covered
with no edit here (test_a_new_flag_is_covered_without_editing_this_test)."""
import argparse
import glob
import hashlib
import importlib
import os
import pkgutil
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import bct.tools
from bct.tools import common
from bct.tools.common import run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def entry_points() -> list:
    """Module names of every command-line entry point: the tools and the benchmark scripts."""
    tools = [f"bct.tools.{m.name}" for m in pkgutil.iter_modules(bct.tools.__path__) if m.name != "common"]
    scripts = [f"benchmarks.{os.path.basename(p)[:-3]}" for p in sorted(glob.glob(os.path.join(REPO, "benchmarks", "*.py")))
               if "__main__" in open(p).read()]
    return sorted(tools) + scripts


ENTRY_POINTS = entry_points()


def test_discovery_finds_the_tools_and_the_benchmarks():
    assert {"bct.tools.train", "bct.tools.index", "benchmarks.data_loading", "benchmarks.speed"} <= set(ENTRY_POINTS)


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_every_entry_point_exposes_its_parser_and_every_flag_has_a_kind(name):
    module = importlib.import_module(name)
    assert callable(getattr(module, "build_parser", None)) and callable(getattr(module, "main", None)), \
        f"{name} must expose build_parser() and main(argv) (see bct/tools/common.py)"
    parser = module.build_parser()
    assert isinstance(parser, common.Parser), f"{name}: build its parser with bct.tools.common.parser / script_parser"
    missing = common.undeclared(parser)
    assert not missing, ("flags without a declared kind (give each a type= of bct.tools.common: count, seed, "
                         "fraction, existing_file, output_file, csv_list(...), text, ...): " + ", ".join(missing))


# --------------------------------------------------------------------------------------------
# From a kind: a valid value and the values it must refuse
# --------------------------------------------------------------------------------------------

class Files:
    """The prepared inputs: a file, a folder (a real index), a checkpoint, and where outputs would go; the
    valid values of the other flags of a case name base_model and base_dir (elsewhere)."""

    def __init__(self, root, index, model):
        self.root, self.index, self.model = root, index, model
        self.base_model, self.base_dir = str(root / "base" / "model.pth"), str(root / "base" / "folder")
        self.results = str(root / "inputs" / "results")
        self.file = str(root / "inputs" / "file.txt")
        self.none = str(root / "inputs" / "nowhere")
        self.out = root / "outputs"  # must still be empty at the end
        self._n = 0

    def link_to(self, path):
        """A symlink to ``path`` beside it (made once)."""
        link = path + ".link"
        if not os.path.lexists(link):
            os.symlink(path, link)
        return link

    def fresh(self, what):
        self._n += 1
        return str(self.out / f"{what}{self._n}")


def valid(kind, f: Files) -> str:
    family = kind.family
    if family == "list":
        return valid(kind.item, f)
    return {
        "int": lambda: str(max(kind.lo or 1, 1)), "float": lambda: "0.5",
        "file": lambda: f.base_model, "config": lambda: "", "path": lambda: f.base_dir, "folder": lambda: f.base_dir,
        "result_folders": lambda: f.base_dir, "output_file": lambda: f.fresh("o.json"),
        "output_folder": lambda: f.fresh("dir") if kind.role == common.OUTPUT else f.base_dir,
        "work_path": lambda: f.base_dir,
        "models": lambda: f"a={f.base_model},b={f.base_model}", "datasets": lambda: "rparis6k", "device": lambda: "cpu",
        "choice": lambda: str(kind.choices[0]) if kind.choices[0] != "" else str(kind.choices[-1]),
        "text": lambda: "x",
    }[family]()


def bad_values(kind, f: Files) -> list:
    """The values of ``kind`` a user could get wrong, from its declaration only. An unknown family fails
    loudly: a new kind needs its bad values here."""
    family = kind.family
    if family == "int":
        out = ["x", "1.5", "9" * 40]
        if kind.lo is not None:
            out += [str(kind.lo - 1), "-1"] + (["0"] if kind.lo > 0 else [])
        if kind.hi is not None:
            out.append(str(kind.hi + 1))
        return sorted(set(out), key=out.index)
    if family == "float":
        out = ["x", "nan", "inf", "1e999"]
        if kind.lo is not None:
            out += [str(kind.lo) if kind.lo_open else str(kind.lo - 1), "-1"]
        if kind.hi is not None:
            out += [str(kind.hi) if kind.hi_open else str(kind.hi + 1)]
        return out
    if family in ("file", "config"):
        return [f.none, f.index]
    if family in ("folder", "result_folders"):
        return [f.none, f.file]
    if family == "path":
        return [f.none]
    if family == "output_file":
        return [f.index, os.path.join(f.file, "below_a_file.json")]
    if family == "output_folder":
        return [f.file, os.path.join(f.file, "below_a_file")]
    if family == "work_path":
        return [os.path.join(f.file, "below_a_file")]
    if family == "choice":
        return ["nope"]
    if family == "list":
        return [","] + bad_values(kind.item, f)
    if family == "models":
        return ["x", f"a={f.none},b={f.model}", f"a={f.index},b={f.model}", f"a={f.model},a={f.model}"]
    if family == "datasets":
        return ["A.B", ","]
    if family == "device":
        return ["gpu9"]
    if family in ("text", "switch", "overrides"):
        return []  # free text (checked where it is used), a switch, config overrides (their own tests)
    raise AssertionError(f"no bad values known for the kind family {family!r}: add them to bad_values")


def _named(action) -> str:
    return action.option_strings[-1] if action.option_strings else (action.metavar or action.dest)


def _parsers(parser):
    """(argv prefix, parser) of the parser and of each sub-command."""
    yield [], parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for cmd, sub in action.choices.items():
                yield [cmd], sub


def _baseline(parser, f: Files, skip=()) -> list:
    """argv giving every required flag a valid value (except the actions ``skip`` and their required
    mutually exclusive groups)."""
    argv = []
    groups = [g for g in parser._mutually_exclusive_groups if g.required]
    for action in parser._actions:
        kind = common.kind_of(action)
        if action in skip or kind is None or action.nargs == argparse.REMAINDER:
            continue
        group = next((g for g in groups if action in g._group_actions), None)
        if group is not None:
            if any(a in group._group_actions for a in skip) or action is not group._group_actions[0]:
                continue
        elif not (action.required or (not action.option_strings and action.nargs not in ("?", "*"))
                  or (kind.role and isinstance(action.default, str) and action.default)):  # a default path is checked too
            continue
        value = valid(kind, f)
        argv += ([action.option_strings[0]] if action.option_strings else []) + [value]
    return argv


def bad_cases(parser, f: Files) -> list:
    """(argv, flag name) pairs: one bad value each, the rest valid."""
    cases = []
    for prefix, p in _parsers(parser):
        for action in p._actions:
            kind = common.kind_of(action)
            if kind is None:
                continue
            for value in bad_values(kind, f):
                given = ([action.option_strings[0]] if action.option_strings else []) + [value]
                cases.append((prefix + given + _baseline(p, f, [action]), _named(action)))
    return cases


def _refused(main, argv, capsys):
    try:
        run(main, list(argv))
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err.strip().splitlines()


def _snapshot(folder) -> dict:
    out = {}
    for root, dirs, names in os.walk(folder):
        for name in dirs + names:
            path = os.path.join(root, name)
            data = open(path, "rb").read() if os.path.isfile(path) and not os.path.islink(path) else b""
            out[os.path.relpath(path, folder)] = hashlib.sha256(data).hexdigest()
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A checkpoint, a small real index (its manifest, models table and vectors), a plain file."""
    from bct.config import load_cfg
    from bct.engine.checkpoint import save_checkpoint
    from bct.index import Index
    from bct.models.build import build_model
    root = tmp_path_factory.mktemp("prepared")
    (root / "inputs").mkdir()
    (root / "outputs").mkdir()
    (root / "inputs" / "file.txt").write_text("x\n")
    (root / "base" / "folder").mkdir(parents=True)
    (root / "inputs" / "results").mkdir()
    (root / "inputs" / "results" / "roxford5k.json").write_text('{"dataset": "roxford5k", "headline": {"self": 50.0}}')
    net = build_model(load_cfg("", ["NEW_MODEL.PRETRAINED", "False", "NEW_MODEL.ARCH", "mobilenet_v3_small"]), "new")
    model = str(root / "inputs" / "model.pth")
    save_checkpoint(model, {"model": net.state_dict(), "meta": net.meta})
    shutil.copy(model, root / "base" / "model.pth")
    rng = np.random.default_rng(0)
    index = str(root / "inputs" / "index")
    Index.from_vectors(index, rng.standard_normal((20, net.meta["emb_dim"])).astype("float32"),
                       [f"img/{i}.jpg" for i in range(20)], model)
    f = Files(root, index, model)
    for path in (model, os.path.join(f.results, "roxford5k.json")):
        f.link_to(path)  # made now: the snapshots before and after a case hold them
    return f


def _check_all(parser, main, f: Files, capsys, monkeypatch) -> int:
    monkeypatch.chdir(f.out)
    before = _snapshot(f.root / "inputs"), _snapshot(f.root / "base")
    failures, cases = [], bad_cases(parser, f)
    for argv, flag in cases:
        code, err = _refused(main, argv, capsys)
        if code != 2 or len(err) != 1 or not err[0].startswith("error: ") or flag not in err[0]:
            failures.append(f"{parser.prog} {' '.join(argv)}: exit {code}, stderr {err[-3:]}")
    assert not failures, f"{len(failures)} of {len(cases)} bad values not refused in one line:\n" + "\n".join(failures)
    assert (_snapshot(f.root / "inputs"), _snapshot(f.root / "base")) == before, "an input changed"
    assert os.listdir(f.out) == [], f"something was written: {os.listdir(f.out)}"
    return len(cases)


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_every_bad_value_of_every_flag_exits_2_with_one_line(name, prepared, capsys, monkeypatch):
    module = importlib.import_module(name)
    _check_all(module.build_parser(), module.main, prepared, capsys, monkeypatch)


def _extra_tool():
    """A tool as someone might add it tomorrow: new flags declared through the shared helpers."""
    p = common.parser(__file__, "An extra tool.\n\n    python -m bct.tools.extra --frames N\n", cfg=True)
    p.add_argument("--frames", type=common.count, default=3)
    p.add_argument("--jitter", type=common.fraction)
    p.add_argument("--src", type=common.existing_file)
    p.add_argument("--dump", type=common.output_file)
    p.add_argument("--shards", type=common.csv_list(common.nonneg_int))
    return p


def test_a_new_flag_is_covered_without_editing_this_test(prepared, capsys, monkeypatch):
    p = _extra_tool()
    cases = {(tuple(argv), flag) for argv, flag in bad_cases(p, prepared)}
    for flag, values in (("--frames", ("-1", "0", "x", "9" * 40)), ("--jitter", ("0", "2", "nan", "x")),
                         ("--src", (prepared.none, prepared.index)), ("--shards", ("-1", ",", "x"))):
        for value in values:
            assert any(argv[:2] == (flag, value) for argv, _ in cases), (flag, value)
    assert _check_all(p, p.parse_args, prepared, capsys, monkeypatch) == len(cases)
    assert ("--dump", "--src") in {(o, i) for o, i, _ in overlap_cases(p, prepared)}


def test_a_flag_without_a_declared_kind_is_caught():
    p = _extra_tool()
    p.add_argument("--backend")          # no type: what a hurried edit looks like
    p.add_argument("--level", type=int)  # a plain int: no range
    sub = p.add_subparsers(dest="command").add_parser("go")
    sub.add_argument("--uri")
    assert common.undeclared(p) == [f"{p.prog} --backend", f"{p.prog} --level", f"{sub.prog} --uri"]


def test_the_declared_kind_is_read_back():
    from bct.tools import index
    flags = {(prog.split()[-1], common.flag_of(a)): common.kind_of(a) for prog, a in common.walk(index.build_parser())}
    assert flags[("backfill", "--seed")].family == "int" and flags[("backfill", "--seed")].lo == 0
    assert flags[("search", "--out")].role == common.OUTPUT and flags[("search", "--vectors")].role == common.INPUT
    assert flags[("backfill", "--fraction")].hi == 1 and flags[("backfill", "--fraction")].lo_open


# --------------------------------------------------------------------------------------------
# No output over an input: every (output flag, input flag) pair of every parser
# --------------------------------------------------------------------------------------------

def overlap_cases(parser, f: Files) -> list:
    """(output flag, input flag, argv): for each path an input flag reads (its kind says which), the output
    pointed at it, at a symlink to it, inside it (a folder) or at a folder holding it."""
    cases = []
    for prefix, p in _parsers(parser):
        acts = [(a, common.kind_of(a)) for a in p._actions if common.kind_of(a) is not None]
        outs = [(a, k) for a, k in acts if k.role == common.OUTPUT and a.option_strings]
        ins = [(a, k) for a, k in acts if k.role == common.INPUT]
        for oa, ok in outs:
            for ia, ik in ins:
                family = ik.item.family if ik.family == "list" else ik.family
                given = {"models": f"a={f.model},b={f.model}", "datasets": f"x={f.index}", "result_folders": f.results,
                         "file": f.model, "config": f.model}.get(family, f.index)
                targets = []
                for path in ik.paths(ik(given)):
                    if os.path.isfile(path):
                        targets += ([path, f.link_to(path)] if ok.family == "output_file" else [os.path.dirname(path)])
                    else:
                        targets += ([os.path.join(path, "r.json")] if ok.family == "output_file"
                                    else [path, os.path.join(path, "sub"), os.path.dirname(path)])
                for target in targets:
                    argv = ([ia.option_strings[0]] if ia.option_strings else []) + [given] + [oa.option_strings[0], target]
                    cases.append((common.flag_of(oa), common.flag_of(ia), prefix + argv + _baseline(p, f, [oa, ia])))
    return cases


@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_no_output_lies_over_an_input(name, prepared, capsys, monkeypatch):
    module = importlib.import_module(name)
    f = prepared
    monkeypatch.chdir(f.out)
    before = _snapshot(f.root / "inputs")
    failures = []
    cases = overlap_cases(module.build_parser(), f)
    for out_flag, in_flag, argv in cases:
        code, err = _refused(module.main, argv, capsys)
        line = err[0] if len(err) == 1 else ""
        if code != 2 or not line.startswith(f"error: {out_flag} ") or in_flag not in line or \
                not any(w in line for w in ("never writes over", "never writes into", "never writes where")):
            failures.append(f"{' '.join(argv)}: exit {code}, stderr {err[-3:]}")
    assert not failures, "\n".join(failures)
    assert _snapshot(f.root / "inputs") == before and os.listdir(f.out) == []


def test_every_writer_is_in_the_overlap_walk(prepared):
    """Every entry point with an output flag and an input flag yields cases (a writer whose paths are not
    declared as outputs would yield none)."""
    writers = {n for n in ENTRY_POINTS if overlap_cases(importlib.import_module(n).build_parser(), prepared)}
    assert {"bct.tools.index", "bct.tools.export", "bct.tools.resize_images", "benchmarks.data_loading",
            "benchmarks.speed", "bct.tools.summarize", "bct.tools.test"} <= writers


def test_the_one_helper_sees_through_links(tmp_path):
    from bct.utils.errors import BadInputError
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.npy").write_bytes(b"x")
    os.symlink(tmp_path / "a", tmp_path / "alias")
    os.link(tmp_path / "a" / "f.npy", tmp_path / "hard.npy")
    a_file, a_folder = [("the input", str(tmp_path / "a" / "f.npy"))], [("the input", str(tmp_path / "a"))]
    for out, inputs, words in ((tmp_path / "alias" / "f.npy", a_file, "is the input"),  # a symlinked folder
                               (tmp_path / "hard.npy", a_file, "is the input"),         # a hard link
                               (tmp_path / "alias" / "new.csv", a_folder, "lies inside"),
                               (tmp_path, a_file, "holds")):
        with pytest.raises(BadInputError, match=words):
            common.refuse_overlap([("--out", str(out))], inputs)
    common.refuse_overlap([("--out", str(tmp_path / "b.csv"))], [("the input", str(tmp_path / "a"))])  # beside: fine


# --------------------------------------------------------------------------------------------
# Paths a tool knows only from its config, and a file of a training run
# --------------------------------------------------------------------------------------------

def _tool(name):
    return importlib.import_module(f"bct.tools.{name}").main


def test_config_paths_and_run_files_are_guarded_too(prepared, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "model_final.pth").write_bytes(open(prepared.model, "rb").read())
    (run_dir / "last_checkpoint").write_text("model_final.pth\n")
    (tmp_path / "list.txt").write_text("a.jpg 0\n")
    (tmp_path / "exp.yml").write_text("SEED: 3\n")
    cases = [
        ("convert_checkpoint", ["--model", prepared.model, "--out", str(run_dir / "model_final.pth")],
         run_dir / "model_final.pth", "which this tool did not make"),
        ("convert_checkpoint", [prepared.model, prepared.model], prepared.model, "is the checkpoint read"),
        ("pretrain", ["--out", str(tmp_path / "list.txt"), "TRAIN.LIST_FILE", str(tmp_path / "list.txt")],
         tmp_path / "list.txt", "is TRAIN.LIST_FILE"),
        ("init_model", ["--cfg", str(tmp_path / "exp.yml"), "--role", "new", "--out", str(tmp_path / "exp.yml")],
         tmp_path / "exp.yml", "is the input of --cfg"),
    ]
    for tool, argv, guarded, words in cases:
        before = open(guarded, "rb").read()
        code, err = _refused(_tool(tool), argv, capsys)
        assert code == 2 and len(err) == 1 and words in err[0], (tool, err)
        assert open(guarded, "rb").read() == before


@pytest.mark.parametrize("tool, argv", [
    ("train", ["TRAIN.EPOCHS", "-1"]), ("train", ["TRAIN.BATCH_SIZE", "0"]), ("train", ["TRAIN.EPOCHS", "x"]),
    ("train", ["TRAIN.EPOCHS"]), ("train", ["nope", "1"]), ("pretrain", ["--out", "p.pth", "TRAIN.EPOCHS", "0"]),
    ("init_model", ["--role", "old", "--out", "i.pth", "MODEL.EMB_DIM", "0"]),
])
def test_bad_config_overrides_exit_2_with_one_line(tool, argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = _refused(_tool(tool), argv, capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert os.listdir(tmp_path) == []


def test_a_folder_for_a_file_says_it_is_a_folder(prepared, capsys):
    code, err = _refused(_tool("export"), ["--model", prepared.index, "--format", "torchscript", "--out",
                                           prepared.fresh("m.pt")], capsys)
    assert code == 2 and f"{prepared.index} is a folder, not a file" in err[0] and "does not exist" not in err[0]


def test_an_unwritable_out_is_named_as_given(tmp_path, capsys, monkeypatch):
    """A folder the process may not write into (simulated: the tests may run as root, whom permissions do
    not stop) is reported under the --out given, not under a hidden temporary name."""
    locked = tmp_path / "locked"
    locked.mkdir()
    (tmp_path / "results").mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(locked) else real(path, mode))
    code, err = _refused(_tool("summarize"), [str(tmp_path / "results"), "--out", str(locked / "s.md")], capsys)
    assert code == 2 and f"--out: {locked / 's.md'}: cannot write into {locked}: permission denied" in err[0]
    assert ".tmp" not in err[0]


# --------------------------------------------------------------------------------------------
# The named examples, as real processes
# --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_named_examples_as_processes(prepared, tmp_path):
    """`benchmarks/data_loading.py --iters -1`, `index backfill --seed -1` and `index search --out` over
    its query file: exit 2, one line, the index and the query file unchanged, nothing written."""
    np.save(tmp_path / "q.npy", np.zeros((2, 4), np.float32))
    q_before = open(tmp_path / "q.npy", "rb").read()
    index_before = _snapshot(prepared.index)
    env = dict(os.environ, PYTHONPATH=REPO)
    for argv, words in (
            ([os.path.join(REPO, "benchmarks", "data_loading.py"), "--iters", "-1"], "argument --iters: -1 is not"),
            (["-m", "bct.tools.index", "backfill", prepared.index, "--model", prepared.model, "--seed", "-1"],
             "argument --seed: -1 is negative"),
            (["-m", "bct.tools.index", "search", prepared.index, "--vectors", str(tmp_path / "q.npy"), "--out",
              str(tmp_path / "q.npy")], "--out")):
        done = subprocess.run([sys.executable, *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        err = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(err) == 1 and words in err[0], (argv, done.stderr[-2000:])
    assert open(tmp_path / "q.npy", "rb").read() == q_before and _snapshot(prepared.index) == index_before
    assert sorted(os.listdir(tmp_path)) == ["q.npy"]


# --------------------------------------------------------------------------------------------
# SIGTERM stops a tool and its workers
# --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_resize_images_stopped_by_sigterm_ends_its_workers(tmp_path):
    from PIL import Image
    (tmp_path / "src" / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(400):
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(tmp_path / "src" / "img" / f"{i}.jpg")
        lines.append(f"img/{i}.jpg {i % 4}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "bct.tools.resize_images", "--list", str(tmp_path / "list.txt"),
                             "--root", str(tmp_path / "src"), "--out", str(out), "--max-side", "64", "--workers", "2"],
                            cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (out / "img").is_dir():
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and "BrokenPipe" not in err, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("stopped")
    count = len(list((out / "img").iterdir()))
    time.sleep(1.0)
    assert len(list((out / "img").iterdir())) == count  # no worker goes on writing


# --------------------------------------------------------------------------------------------
# The scripts' environment variables: one declaration (scripts/lib/env.sh), used by every script
# --------------------------------------------------------------------------------------------

SCRIPTS = sorted(glob.glob(os.path.join(REPO, "scripts", "*.sh")))
ENV_LIB = os.path.join(REPO, "scripts", "lib", "env.sh")


def _declared_variables() -> dict:
    out = subprocess.run(["bash", "-c", f'source "{ENV_LIB}"; for k in "${{!BCT_ENV_KINDS[@]}}"; do '
                         'echo "$k ${BCT_ENV_KINDS[$k]}"; done'], capture_output=True, text=True, check=True).stdout
    return dict(line.split() for line in out.splitlines())


def _read_variables(text: str) -> set:
    import re
    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-+=?])", text)) | set(re.findall(r"\bbct_env ([A-Z_][A-Z0-9_]*)", text))


def test_every_variable_a_script_reads_is_declared_and_every_script_uses_the_declaration():
    declared = _declared_variables()
    missing, unchecked = [], []
    for path in SCRIPTS:
        text = open(path).read()
        missing += [f"{os.path.basename(path)}: {v}" for v in sorted(_read_variables(text) - set(declared))]
        if "lib/env.sh" not in text and "launch.sh" not in text:
            unchecked.append(os.path.basename(path))
    assert not missing, "variables read by a script but not declared in scripts/lib/env.sh: " + ", ".join(missing)
    assert not unchecked, f"scripts that do not source scripts/lib/env.sh: {unchecked}"
    assert {"GPUS", "METHOD", "FRESH", "GENERATIONS", "FRACTIONS", "OLD_MODEL_PATH"} <= set(declared)


BAD_ENV = {"count": ["-1", "0", "x", "9" * 40], "nonneg": ["-1", "x", "1.5"], "port": ["0", "70000"],
           "bool": ["2", "yes"], "truth": ["maybe"], "fractions": ["0", "1.5", "x", "0.3,,1"], "method": ["nope"],
           "file": ["/nowhere/x.pth", "/"], "folder": ["/nowhere"], "outdir": ["/etc/hostname"],
           "config": ["/nowhere/x.yml"], "start": ["new", "Old"], "name": ["a b", "../x"], "host": ["a b"], "command": ["no-such-program-x"],
           "text": []}


@pytest.mark.slow
def test_a_bad_variable_value_is_one_line_naming_the_variable():
    declared = _declared_variables()
    unknown = sorted(set(declared.values()) - set(BAD_ENV))
    assert not unknown, f"kinds without bad values here: {unknown}"
    lines, cases = [], []
    for name, kind in sorted(declared.items()):
        for value in BAD_ENV[kind]:
            cases.append((name, value))
            lines.append(f'( {name}={value!r}; bct_env {name} "" ) 2>&1; echo "rc=$?"')
    out = subprocess.run(["bash", "-c", f'source "{ENV_LIB}"\n' + "\n".join(lines)], capture_output=True, text=True,
                         env=dict(os.environ, PYTHON=sys.executable)).stdout.splitlines()
    assert len(out) == 2 * len(cases), out
    for (name, value), err, rc in zip(cases, out[0::2], out[1::2]):
        assert rc == "rc=2" and err.startswith(f"error: {name}={value}: "), (name, value, err, rc)


@pytest.mark.slow
def test_a_script_refuses_a_bad_variable_before_any_work(tmp_path):
    done = subprocess.run(["bash", os.path.join(REPO, "scripts", "train_new.sh")], cwd=tmp_path, capture_output=True,
                          text=True, env=dict(os.environ, METHOD="nope", PYTHON=sys.executable))
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        done.stderr.strip().splitlines()[0]] and "error: METHOD=nope: not a method of the catalogue" in done.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("script,env,expected", [
    ("train_new.sh", {"PRETRAINED": "False", "START": "pretext"}, "the train scripts take old or random"),
    ("train_old.sh", {"PRETRAINED": "False", "START": "pretext"}, "the train scripts take old or random"),
    ("train_new.sh", {"START": "old"}, "START=old is for PRETRAINED=False"),
    ("train_new.sh", {"PRETRAINED": "False"}, "OLD_MODEL.MODEL_PATH"),
])
def test_the_train_scripts_start_without_imagenet_weights_or_say_why(tmp_path, script, env, expected):
    """PRETRAINED=False: the new model starts from the old model's backbone (START=old) or from random
    weights; a start they cannot make is refused in one line before anything is written."""
    over = ["OUTPUT", str(tmp_path / "out"), "OLD_MODEL.MODEL_PATH", str(tmp_path / "missing.pth")]
    done = subprocess.run(["bash", os.path.join(REPO, "scripts", script), *over], cwd=REPO, capture_output=True,
                          text=True, env=dict(os.environ, PYTHON=sys.executable, PYTHONPATH=REPO, GPUS="0", **env))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and expected in lines[0], done.stderr
    assert not (tmp_path / "out").exists()
