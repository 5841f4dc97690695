"""Every tool on a matrix of bad values for each of its flags and for config keys (negative, zero, wrong
type, missing file, folder for a file, file for a folder): exit code 2 and exactly one line on stderr,
before anything is written. Then the class of outputs that would replace an input: every tool that
writes refuses an output that is (or resolves to) one of its inputs, or a file of a training run it did
not make, and leaves the input as it was. And a SIGTERM stops a tool with its worker processes.

The tools run in this process through bct.tools.common.run, as `python -m` runs them; each case fails
while parsing or checking, before any model is built."""
import hashlib
import importlib
import os
import signal
import subprocess
import sys
import time

import pytest

from bct.tools.common import run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def files(tmp_path):
    """A file, a folder, a path that does not exist, a checkpoint-named file, a list, and the pairs to
    reach them from argv."""
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("x\n")
    (tmp_path / "model.pth").write_bytes(b"not a checkpoint")
    (tmp_path / "list.txt").write_text("img/a.jpg 0\n")
    return {"dir": str(tmp_path / "folder"), "file": str(tmp_path / "file.txt"), "none": str(tmp_path / "none"),
            "model": str(tmp_path / "model.pth"), "list": str(tmp_path / "list.txt"), "tmp": tmp_path}


def _cases(f):
    """(tool, argv) pairs, each with one bad value."""
    d, file, none, model, lst, tmp = f["dir"], f["file"], f["none"], f["model"], f["list"], f["tmp"]
    out_dir = str(tmp / "out")
    syn = ["--config-dir", os.path.join(REPO, "configs", "synthetic")]
    cases = [
        # train
        ("train", ["--cfg", none]), ("train", ["--cfg", d]), ("train", ["--new-lr", "-1"]),
        ("train", ["--new-lr", "0"]), ("train", ["--new-lr", "x"]),
        ("train", ["TRAIN.EPOCHS", "-1"]), ("train", ["TRAIN.BATCH_SIZE", "0"]), ("train", ["TRAIN.EPOCHS", "x"]),
        ("train", ["TRAIN.EPOCHS"]), ("train", ["--resume", "--nope"]),
        # extract_feat
        ("extract_feat", ["--model", none]), ("extract_feat", ["--model", d]), ("extract_feat", ["--out", file]),
        ("extract_feat", ["EVAL.BATCH_SIZE", "0"]), ("extract_feat", ["--model", model, "TRAIN.LIST_FILE", none]),
        ("extract_feat", ["--model", model, "TRAIN.LIST_FILE", d]),
        # test
        ("test", ["--model", none]), ("test", ["--model", d]), ("test", ["--old-model", d]),
        ("test", ["--out", file]), ("test", ["--model", model, "--datasets", "A.B"]),
        ("test", ["--model", model, "EVAL.TOPK", "0"]), ("test", ["--model", model, "EVAL.BATCH_SIZE", "-1"]),
        ("test", ["--model", model, "--datasets", f"x={none}"]), ("test", ["--model", model, "--datasets", f"x={file}"]),
        # compare
        *[("compare", [*syn, *extra]) for extra in (
            ["--seeds", "-1"], ["--seeds", "x"], ["--seeds", "1", "2"], ["--methods", "nope"], ["--out", file],
            ["--generations", "-1"], ["--fractions", "0.3,x"], ["--generations", "1", "--out", out_dir],
            ["--fractions", "0.3", "--out", out_dir], ["--datasets", "", "--out", out_dir],
            ["--out", out_dir, "TRAIN.EPOCHS", "-1"], ["--out", out_dir, "TRAIN.NOPE", "1"])],
        ("compare", ["--config-dir", none]), ("compare", ["--config-dir", file]),
        # compat_matrix
        ("compat_matrix", ["--models", f"a={none},b={model}"]), ("compat_matrix", ["--models", f"a={d},b={model}"]),
        ("compat_matrix", ["--models", f"a={model}"]), ("compat_matrix", ["--models", "x"]),
        ("compat_matrix", ["--models", f"a={model},b={model}", "--out", file]),
        ("compat_matrix", ["--models", f"a={model},b={model}", "--oracles", f"c={model}"]),
        ("compat_matrix", ["--models", f"a={model},b={model}", "--datasets", "A.B"]),
        # convert_checkpoint
        ("convert_checkpoint", ["--model", none, "--out", str(tmp / "o.pth")]),
        ("convert_checkpoint", ["--model", d, "--out", str(tmp / "o.pth")]),
        ("convert_checkpoint", ["--model", model, "--out", d]), ("convert_checkpoint", ["--model", model]),
        ("convert_checkpoint", ["--model", model, "--out", str(tmp / "o.pth"), "--to", "x"]),
        # export
        ("export", ["--model", none, "--format", "onnx", "--out", str(tmp / "m.onnx")]),
        ("export", ["--model", d, "--format", "onnx", "--out", str(tmp / "m.onnx")]),
        ("export", ["--model", model, "--format", "onnx", "--out", d]),
        ("export", ["--model", model, "--format", "x", "--out", str(tmp / "m.onnx")]),
        *[("export", ["--model", model, "--format", "torchscript", "--out", str(tmp / "m.pt"), "--input-size", v])
          for v in ("-1", "0", "x", "16")],
        *[("export", ["--model", model, "--format", "torchscript", "--out", str(tmp / "m.pt"), "--atol", v])
          for v in ("-1", "0", "x", "nan")],
        # init_model
        ("init_model", ["--role", "x", "--out", str(tmp / "i.pth")]), ("init_model", ["--role", "old", "--out", d]),
        ("init_model", ["--role", "old", "--out", str(tmp / "i.pth"), "--seed", "-1"]),
        ("init_model", ["--role", "old", "--out", str(tmp / "i.pth"), "--seed", "x"]),
        ("init_model", ["--role", "old", "--out", str(tmp / "i.pth"), "MODEL.EMB_DIM", "0"]),
        # make_synthetic
        ("make_synthetic", ["--out", file]), ("make_synthetic", ["--out", out_dir, "--workers", "0"]),
        ("make_synthetic", ["--out", out_dir, "--workers", "-2"]), ("make_synthetic", ["--out", out_dir, "--seed", "x"]),
        ("make_synthetic", ["--out", out_dir, "--size", "huge"]), ("make_synthetic", ["--out", out_dir, "--fractions", "x"]),
        # prepare_gldv2
        ("prepare_gldv2", ["--root", none]), ("prepare_gldv2", ["--root", file]),
        ("prepare_gldv2", ["--root", d, "--seed", "-1"]), ("prepare_gldv2", ["--root", d, "--ratio", "x"]),
        ("prepare_gldv2", ["--root", d, "--label-file", none]), ("prepare_gldv2", ["--root", d, "--label-file", d]),
        ("prepare_gldv2", ["--root", d, "--fractions", "0.3,y"]),
        # pretrain
        ("pretrain", ["--cfg", none, "--out", str(tmp / "p.pth")]), ("pretrain", ["--out", d]),
        ("pretrain", ["--out", str(tmp / "p.pth"), "TRAIN.EPOCHS", "0"]),
        # resize_images
        *[("resize_images", ["--list", lst, "--root", d, "--out", out_dir, *extra]) for extra in (
            ["--max-side", "0"], ["--max-side", "-5"], ["--max-side", "x"], ["--min-side", "0"],
            ["--max-side", "64", "--quality", "0"], ["--max-side", "64", "--quality", "101"],
            ["--max-side", "64", "--workers", "0"], ["--max-side", "64", "--workers", "x"])],
        ("resize_images", ["--list", none, "--root", d, "--out", out_dir, "--max-side", "64"]),
        ("resize_images", ["--list", d, "--root", d, "--out", out_dir, "--max-side", "64"]),
        ("resize_images", ["--list", lst, "--root", file, "--out", out_dir, "--max-side", "64"]),
        ("resize_images", ["--list", lst, "--root", d, "--out", file, "--max-side", "64"]),
        # summarize
        ("summarize", [none]), ("summarize", [file]), ("summarize", [d]), ("summarize", [d, "--out", d]),
        ("summarize", [d, d]),
        # prepare_images
        ("prepare_images", ["--src", none, "--out", out_dir]), ("prepare_images", ["--src", file, "--out", out_dir]),
        *[("prepare_images", ["--src", d, "--out", out_dir, *extra]) for extra in (
            ["--old-fraction", "0"], ["--old-fraction", "1.5"], ["--old-fraction", "x"], ["--seed", "x"],
            ["--split", "x"], ["--eval-fraction", "-1"])],
        # index
        ("index", ["build", "--model", none, "--list", lst, "--root", d, "--out", out_dir]),
        ("index", ["build", "--model", d, "--list", lst, "--root", d, "--out", out_dir]),
        ("index", ["build", "--model", model, "--list", none, "--root", d, "--out", out_dir]),
        ("index", ["build", "--model", model, "--list", lst, "--root", d, "--out", out_dir, "--chunk-rows", "0"]),
        ("index", ["search", none, "--model", model, "--vectors", none]), ("index", ["status", none]),
        ("index", ["status", file]), ("index", ["backfill", d, "--model", model, "--fraction", "2"]),
        ("index", ["rollback", none]), ("index", ["nope"]),
        # report
        ("report", [none, "--out", out_dir]), ("report", [file, "--out", out_dir]), ("report", [d]),
        ("report", [d, "--out", file]), ("report", [d, "--out", out_dir]),
        *[("report", [d, "--out", out_dir, *extra]) for extra in (
            ["--queries", "0"], ["--queries", "x"], ["--top", "-1"], ["--top", "x"], ["--seed", "-1"])],
    ]
    return cases


def test_every_tool_is_in_the_matrix(files):
    from helpers import TOOLS
    assert {tool for tool, _ in _cases(files)} == set(TOOLS)


def test_bad_values_exit_2_with_one_line(files, capsys, monkeypatch):
    monkeypatch.chdir(files["tmp"])
    failures = []
    for tool, argv in _cases(files):
        main = importlib.import_module(f"bct.tools.{tool}").main
        try:
            run(main, list(argv))
            code = 0
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err.strip().splitlines()
        if code != 2 or len(err) != 1 or not err[0].startswith("error: ") or "Traceback" in err[0]:
            failures.append(f"{tool} {' '.join(argv)}: exit {code}, stderr {err[-3:]}")
    assert not failures, "\n".join(failures)
    assert not (files["tmp"] / "out").exists()  # nothing was written


def test_a_folder_for_a_file_says_it_is_a_folder(files, capsys):
    from bct.tools import export
    with pytest.raises(SystemExit):
        run(export.main, ["--model", files["dir"], "--format", "torchscript", "--out", str(files["tmp"] / "m.pt")])
    err = capsys.readouterr().err
    assert f"{files['dir']} is a folder, not a file" in err and "does not exist" not in err


def test_an_unwritable_out_is_named_as_given(files, capsys, monkeypatch):
    """A folder the process may not write into (simulated: the tests may run as root, whom permissions do
    not stop) is reported under the --out given, not under a hidden temporary name."""
    locked = files["tmp"] / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(locked) else real(path, mode))
    from bct.tools import summarize
    with pytest.raises(SystemExit):
        run(summarize.main, [files["dir"], "--out", str(locked / "s.md")])
    err = capsys.readouterr().err
    assert f"{locked / 's.md'}: cannot write into {locked}: permission denied" in err and ".tmp" not in err


# --------------------------------------------------------------------------------------------
# An output never replaces an input (nor a file of a training run the tool did not make)
# --------------------------------------------------------------------------------------------

def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A real checkpoint, a finished training folder, a results folder and a tiny image root."""
    from bct.config import load_cfg
    from bct.engine.checkpoint import save_checkpoint
    from bct.models.build import build_model
    root = tmp_path_factory.mktemp("made")
    model = build_model(load_cfg("", ["NEW_MODEL.PRETRAINED", "False", "NEW_MODEL.ARCH", "mobilenet_v3_small"]), "new")
    save_checkpoint(str(root / "model.pth"), {"model": model.state_dict(), "meta": model.meta})
    run_dir = root / "run"
    run_dir.mkdir()
    save_checkpoint(str(run_dir / "model_final.pth"), {"model": model.state_dict(), "meta": model.meta})
    (run_dir / "last_checkpoint").write_text("model_final.pth\n")
    (root / "results").mkdir()
    (root / "results" / "roxford5k.json").write_text('{"dataset": "roxford5k", "headline": {"self": 50.0}}')
    (root / "img").mkdir()
    (root / "list.txt").write_text("a.jpg 0\n")
    (root / "gldv2").mkdir()
    (root / "gldv2" / "gldv2_train_old_30percent_class.txt").write_text("a.jpg 0\n")
    (root / "exp.yml").write_text("SEED: 3\n")
    return root


def _overwrite_cases(m):
    return [
        ("convert_checkpoint", [str(m / "model.pth"), str(m / "model.pth"), "--to", "reference"], m / "model.pth",
         "is the checkpoint read (--model)"),
        ("convert_checkpoint", ["--model", str(m / "model.pth"), "--out", str(m / "run" / "model_final.pth")],
         m / "run" / "model_final.pth", "which this tool did not make"),
        ("export", ["--model", str(m / "model.pth"), "--format", "torchscript", "--out", str(m / "model.pth")],
         m / "model.pth", "is the checkpoint read (--model)"),
        ("export", ["--model", str(m / "model.pth"), "--format", "torchscript", "--out",
                    str(m / "run" / "model_final.pth")], m / "run" / "model_final.pth", "which this tool did not make"),
        ("init_model", ["--cfg", str(m / "exp.yml"), "--role", "new", "--out", str(m / "exp.yml")], m / "exp.yml",
         "is the config"),
        ("pretrain", ["--cfg", str(m / "exp.yml"), "--out", str(m / "exp.yml")], m / "exp.yml", "is the config"),
        ("pretrain", ["--out", str(m / "list.txt"), "TRAIN.LIST_FILE", str(m / "list.txt")], m / "list.txt",
         "is TRAIN.LIST_FILE"),
        ("summarize", [str(m / "results"), "--out", str(m / "results" / "roxford5k.json")],
         m / "results" / "roxford5k.json", "is the result roxford5k.json"),
        ("compat_matrix", ["--models", f"a={m / 'model.pth'},b={m / 'model.pth'}", "--out", str(m / "model.pth")],
         m / "model.pth", "is a file, not a folder"),
        ("test", ["--model", str(m / "model.pth"), "--out", str(m / "model.pth")], m / "model.pth",
         "is a file, not a folder"),
        ("extract_feat", ["--model", str(m / "model.pth"), "--out", str(m / "model.pth")], m / "model.pth",
         "is a file, not a folder"),
        ("make_synthetic", ["--out", str(m / "list.txt")], m / "list.txt", "is a file, not a folder"),
        ("prepare_gldv2", ["--root", str(m / "gldv2"), "--label-file",
                           str(m / "gldv2" / "gldv2_train_old_30percent_class.txt")],
         m / "gldv2" / "gldv2_train_old_30percent_class.txt", "is one of the files this tool writes"),
        ("resize_images", ["--list", str(m / "list.txt"), "--root", str(m / "img"), "--out", str(m / "img"),
                           "--max-side", "64"], m / "list.txt", "is the image root (--root)"),
        ("compare", ["--config-dir", os.path.join(REPO, "configs", "synthetic"), "--out",
                     os.path.join(REPO, "configs", "synthetic")], m / "list.txt", "is the config folder"),
        ("report", [str(m / "results"), "--out", str(m / "results")], m / "results" / "roxford5k.json",
         "is the folder the page is made from"),
    ]


@pytest.mark.parametrize("case", range(16))
def test_no_tool_writes_over_its_input(made, capsys, case):
    tool, argv, guarded, words = _overwrite_cases(made)[case]
    before = _digest(guarded)
    main = importlib.import_module(f"bct.tools.{tool}").main
    with pytest.raises(SystemExit) as code:
        run(main, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code.value.code == 2 and len(err) == 1 and words in err[0], err
    assert _digest(guarded) == before


def test_the_overwrite_cases_cover_every_writer(made):
    from helpers import WRITERS
    assert {tool for tool, *_ in _overwrite_cases(made)} >= WRITERS and len(_overwrite_cases(made)) == 16


# --------------------------------------------------------------------------------------------
# SIGTERM stops a tool and its workers
# --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_resize_images_stopped_by_sigterm_ends_its_workers(tmp_path):
    import numpy as np
    from PIL import Image
    (tmp_path / "img").mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for i in range(400):
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(tmp_path / "img" / f"{i}.jpg")
        lines.append(f"img/{i}.jpg {i % 4}")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "bct.tools.resize_images", "--list", str(tmp_path / "list.txt"),
                             "--root", str(tmp_path), "--out", str(out), "--max-side", "64", "--workers", "2"],
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
