"""One command-line convention across the tools, read from every tool's own parser and --help: the tool
is named `python -m bct.tools.<name>`, its docstring is shown as written (not reflowed into one
paragraph), list-valued flags take ONE comma-separated value (never a space-separated list that would
swallow the KEY VALUE overrides), one model is --model, an output is --out."""
import argparse
import importlib
import os
import pkgutil

import pytest

import bct.tools
from bct.tools import common

# Not a tool: the shared CLI helpers.
NOT_TOOLS = {"common"}
TOOLS = sorted(m.name for m in pkgutil.iter_modules(bct.tools.__path__) if m.name not in NOT_TOOLS)
# Tools that write a file or a folder, and tools that read one model.
WRITERS = {"compare", "compat_matrix", "convert_checkpoint", "export", "extract_feat", "init_model", "make_synthetic",
           "pretrain", "report", "resize_images", "summarize", "test"}
ONE_MODEL = {"convert_checkpoint", "export", "extract_feat", "test"}


def test_every_tool_is_listed():
    assert {"train", "test", "compare", "summarize", "compat_matrix", "export"} <= set(TOOLS)
    assert "generations" not in TOOLS  # a library module: bct.pipeline.chains


def _parser(name: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser a tool builds, caught when main() asks it to parse."""
    caught = {}

    def catch(self, *args, **kwargs):
        caught["parser"] = self
        raise SystemExit(0)
    monkeypatch.setattr(common.Parser, "parse_args", catch)
    main = importlib.import_module(f"bct.tools.{name}").main
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "parser" in caught, f"bct.tools.{name} does not build its parser with bct.tools.common.parser"
    return caught["parser"]


@pytest.mark.parametrize("name", TOOLS)
def test_help_names_the_tool_and_keeps_its_docstring(name, capsys):
    module = importlib.import_module(f"bct.tools.{name}")
    with pytest.raises(SystemExit) as code:
        module.main(["--help"])
    assert code.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: python -m bct.tools.{name} "), text[:200]
    doc = [line.strip() for line in module.__doc__.strip().splitlines()]
    shown = [line.strip() for line in text.splitlines()]
    assert len(doc) >= 3 and all(line in shown for line in doc if line), "the docstring is reflowed"
    commands = [line for line in doc if line.startswith("python -m bct.tools.")]
    assert commands and all(c.startswith(f"python -m bct.tools.{name}") for c in commands), \
        "the docstring shows the tool's own command"


@pytest.mark.parametrize("name", TOOLS)
def test_list_flags_take_one_comma_separated_value(name, monkeypatch):
    parser = _parser(name, monkeypatch)
    for action in parser._actions:
        if action.option_strings:
            assert action.nargs in (None, 0), f"{name} {action.option_strings[0]} takes nargs={action.nargs!r}"
        elif action.nargs == argparse.REMAINDER:
            assert action is parser._actions[-1], f"{name}: the KEY VALUE overrides come last"


@pytest.mark.parametrize("name", TOOLS)
def test_outputs_are_out_and_one_model_is_model(name, monkeypatch):
    flags = {f for a in _parser(name, monkeypatch)._actions for f in a.option_strings}
    if name in WRITERS:
        assert "--out" in flags, f"{name} writes but has no --out"
    if name in ONE_MODEL:
        assert "--model" in flags, f"{name} reads a model but has no --model"


def test_a_space_separated_list_is_refused_with_the_convention():
    from bct.tools import compare
    from bct.utils.errors import BadInputError
    with pytest.raises(BadInputError, match=r"'2' is not a config key.*one comma-separated value \(e\.g\. --seeds 1,2,3\)"):
        compare.main(["--seeds", "1", "2", "3"])


def test_a_model_path_with_an_equals_sign_is_a_path(tmp_path):
    path = tmp_path / "lr=0.1.pth"
    path.write_bytes(b"")
    assert common.named_paths(f"{path},b={path}", "--models") == [("lr=0.1", str(path)), ("b", str(path))]


def test_scripts_follow_the_convention():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for script in ("benchmark.sh", "demo.sh", "test.sh"):
        text = open(os.path.join(repo, "scripts", script)).read()
        assert "--seeds 1 2" not in text and "--methods advbct bct" not in text and " -nt " not in text, script
    assert "bash scripts/test.sh own <name> <path>" in open(os.path.join(repo, "scripts", "test.sh")).read()
