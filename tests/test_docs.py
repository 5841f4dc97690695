"""The documentation stays true to the repository: every command in a fenced block of README.md
names a script, tool and config file that exist, and every relative link of the docs resolves."""
import glob
import os
import re
import shlex

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", "Dataset.md", "data/README.md", "output/README.md",
        *sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "**", "*.md"), recursive=True))]
SHELL_WORDS = {"for", "do", "done", "then", "fi", "if", "in", "while"}
# Commands from outside the project that a fenced block may show.
EXTERNAL = {"pip", "python3.11", ".", "cd", "export", "git", "mkdir", "ls", "cat"}


def _fenced_blocks(text: str):
    """(language, body) of every ``` block."""
    return re.findall(r"^```([\w-]*)\n(.*?)^```", text, flags=re.S | re.M)


def _commands(body: str):
    """Logical shell commands of a block: continuation lines joined, comments dropped, split at ; && ||."""
    joined = re.sub(r"\\\n\s*", " ", body)
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        for part in re.split(r";|&&|\|\|", line):
            words = shlex.split(part, comments=True)
            while words and words[0] in SHELL_WORDS:
                words = words[1:]
            if words and "in" in words[1:2]:  # `for x in a b c`
                continue
            if words:
                yield words


def _project_refs(words: list) -> list:
    """Scripts, tools and config paths a command names, as (kind, path relative to the repository)."""
    refs = []
    values = [w.split("=", 1)[1] if re.match(r"^[A-Z_]+=", w) else w for w in words]
    for i, w in enumerate(values):
        if "$" in w:
            continue
        if w.startswith(("scripts/", "configs/")):
            refs.append(("file", w.rstrip("/")))
        elif i > 0 and values[i - 1] == "-m" and w.startswith("bct"):
            refs.append(("module", w))
    return refs


def _readme_commands():
    text = open(os.path.join(REPO, "README.md")).read()
    return [words for lang, body in _fenced_blocks(text) if lang in ("bash", "sh", "")
            for words in _commands(body)]


def _program(words: list) -> str:
    return next(w for w in words if not re.match(r"^[A-Z_]+=", w))


def test_readme_shows_the_quick_start_and_every_pipeline_step():
    names = {" ".join(c) for c in _readme_commands()}
    assert {"bash scripts/demo.sh", "bash scripts/run_tests.sh"} <= names
    for script in ("train_old.sh", "extract_feat.sh", "train_new.sh", "test.sh", "own.sh"):
        assert any(f"scripts/{script}" in n for n in names), f"README shows no command of scripts/{script}"


@pytest.mark.parametrize("words", [w for w in _readme_commands() if _program(w) not in EXTERNAL],
                         ids=lambda w: " ".join(w)[:60])
def test_every_readme_command_names_what_exists(words):
    refs = _project_refs(words)
    assert refs, f"command names no script, tool or config of the repository: {' '.join(words)}"
    for kind, ref in refs:
        if kind == "module":
            path = os.path.join(REPO, *ref.split("."))
            assert os.path.isfile(path + ".py") or os.path.isfile(os.path.join(path, "__main__.py")), \
                f"{' '.join(words)}: no module {ref}"
        else:
            assert os.path.exists(os.path.join(REPO, ref)), f"{' '.join(words)}: {ref} does not exist"


@pytest.mark.parametrize("doc", DOCS)
def test_every_relative_link_resolves(doc):
    text = open(os.path.join(REPO, doc)).read()
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    links = re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", text)
    for link in links:
        if re.match(r"^[a-z]+:", link) or link.startswith("#"):
            continue
        target = os.path.normpath(os.path.join(REPO, os.path.dirname(doc), link.split("#", 1)[0]))
        assert os.path.exists(target), f"{doc}: link {link} points at nothing"


# docs/reference.md names the reference implementation's files on purpose.
@pytest.mark.parametrize("doc", [d for d in DOCS if d != "docs/reference.md"])
def test_every_script_and_config_a_doc_names_exists(doc):
    text = open(os.path.join(REPO, doc)).read()
    for m in re.finditer(r"(?<![\w./-])((?:configs|scripts)/[\w./-]*)", text):
        path, after = m.group(1).rstrip("."), text[m.end():m.end() + 1]
        if after in "<${*":  # a pattern such as configs/new_<method>.yml
            continue
        assert os.path.exists(os.path.join(REPO, path)), f"{doc}: {path} does not exist"


def _configuration_page() -> str:
    return open(os.path.join(REPO, "docs", "configuration.md")).read()


def test_the_configuration_page_covers_every_script_tool_and_variable():
    """docs/configuration.md claims the scripts, tools and keys: every script, every tool, and every
    environment variable that benchmark.sh, demo.sh and test.sh read is on it."""
    text = _configuration_page()
    for script in sorted(os.listdir(os.path.join(REPO, "scripts"))):
        assert f"scripts/{script}" in text, f"docs/configuration.md does not name scripts/{script}"
    for f in sorted(os.listdir(os.path.join(REPO, "bct", "tools"))):
        if f.endswith(".py") and f not in ("__init__.py", "common.py"):
            assert f"bct.tools.{f[:-3]}" in text, f"docs/configuration.md does not name bct.tools.{f[:-3]}"
    for script in ("benchmark.sh", "demo.sh", "test.sh", "train_old.sh", "extract_feat.sh"):
        body = open(os.path.join(REPO, "scripts", script)).read()
        for var in sorted(set(re.findall(r"^([A-Z_]+)=\$\{\1[:-]", body, flags=re.M))):
            if var not in ("REPO_ROOT",):
                assert f"`{var}`" in text, f"docs/configuration.md does not name {var} of scripts/{script}"


def test_every_tool_the_configuration_page_names_exists():
    for module in set(re.findall(r"`(bct\.tools\.\w+)`", _configuration_page())):
        assert os.path.isfile(os.path.join(REPO, *module.split(".")) + ".py"), f"no module {module}"


# -- config keys: the docs speak today's names ---------------------------------------------------------
# A dotted upper-case name (TRAIN.LIST_FILE, COMP_LOSS.RADIUS_FILE, TRAIN.OPTIMIZER.BASE_LR); `SECTION.*`
# and `*.KEY` / `<ROLE>.KEY` patterns are read too.
_KEY = re.compile(r"(?<![\w*/$>-])((?:[A-Z][A-Z0-9_]*\.)+[A-Z][A-Z0-9_]*)(?![\w(])")
_SECTION_STAR = re.compile(r"(?<![\w.])((?:[A-Z][A-Z0-9_]*\.)*[A-Z][A-Z0-9_]*)\.\*")
_STAR_KEY = re.compile(r"(?:\*|<[A-Z_]+>)\.([A-Z][A-Z0-9_]*)(?![\w(])")
# A doc may quote the error message of a misspelt key.
_QUOTED_TYPO = re.compile(r"unknown config key ((?:[A-Z][A-Z0-9_]*\.)+[A-Z][A-Z0-9_]*)")
REFERENCE_DOC = "docs/reference.md"


def _key_docs():
    return ["README.md", "Dataset.md", "data/README.md", "output/README.md",
            *[d for d in DOCS if d.startswith("docs/")]]


def _defaults():
    from bct.config.defaults import get_cfg_defaults
    return get_cfg_defaults()


def _node(cfg, key):
    node = cfg
    for part in key.split("."):
        if not hasattr(node, "keys") or part not in node:
            return None
        node = node[part]
    return node


def _all_leaf_names(cfg):
    names = set()
    for k, v in cfg.items():
        names.add(k)
        if hasattr(v, "keys"):
            names |= _all_leaf_names(v)
    return names


def _stale_keys(text: str):
    """(line number, name, line) of every config name in `text` that the defaults do not define."""
    cfg = _defaults()
    leaves = _all_leaf_names(cfg)
    for n, line in enumerate(text.splitlines(), 1):
        typos = set(_QUOTED_TYPO.findall(line))
        for key in _KEY.findall(line):
            if _node(cfg, key) is None and key not in typos:
                yield n, key, line
        for section in _SECTION_STAR.findall(line):
            if not hasattr(_node(cfg, section), "keys"):
                yield n, section + ".*", line
        for leaf in _STAR_KEY.findall(line):
            if leaf not in leaves:
                yield n, "*." + leaf, line


def _reference_tables(text: str):
    """The tables of docs/reference.md's "Config keys" section: lists of rows, each a list of cells."""
    body = text.split("## Config keys", 1)[1].split("\n## ", 1)[0]
    tables, current = [], []
    for line in body.splitlines() + [""]:
        if line.startswith("|"):
            current.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif current:
            tables.append(current)
            current = []
    return tables


@pytest.mark.parametrize("doc", _key_docs())
def test_every_config_key_a_doc_names_is_current(doc):
    """README.md, Dataset.md and docs/ name only keys of bct/config/defaults.py; the reference's and
    the earlier names appear only in the tables of docs/reference.md."""
    text = open(os.path.join(REPO, doc)).read()
    stale = [(n, key) for n, key, line in _stale_keys(text)
             if not (doc == REFERENCE_DOC and line.startswith("|"))]
    assert not stale, (f"{doc} names config keys that bct does not define (write today's name; the "
                       f"reference's go in {REFERENCE_DOC}): " + ", ".join(f"line {n}: {k}" for n, k in stale))


def test_the_reference_key_table_is_the_accepted_keys():
    """docs/reference.md's mapping table lists exactly the keys the config accepts without defining
    them (REFERENCE_KEYS: the reference's, the renamed and the dead ones), each with its target."""
    from bct.config.loader import REFERENCE_KEYS
    text = open(os.path.join(REPO, REFERENCE_DOC)).read()
    table = next(t for t in _reference_tables(text) if t[0][:2] == ["Reference key", "bct"])
    listed = {}
    for row in table[2:]:
        for name in re.findall(r"`([A-Z][A-Z0-9_.]*)`", row[0]):
            listed[name] = row[1]
    assert set(listed) == set(REFERENCE_KEYS), (
        f"{REFERENCE_DOC}: the table lacks {sorted(set(REFERENCE_KEYS) - set(listed))} and lists "
        f"{sorted(set(listed) - set(REFERENCE_KEYS))} that the config does not accept")
    cfg = _defaults()
    for name, target_cell in listed.items():
        target = REFERENCE_KEYS[name][0]
        if target:
            assert f"`{target}`" in target_cell, f"{REFERENCE_DOC}: {name} maps to {target}, the table says {target_cell!r}"
            assert _node(cfg, target) is not None
        else:
            assert "ignored" in target_cell, f"{REFERENCE_DOC}: {name} is ignored, the table says {target_cell!r}"


def test_the_key_check_catches_an_old_name():
    found = {key for _, key, _ in _stale_keys("set `TRAIN.FILE_DIR` and `EVAL.HOT_REFRESH True`; "
                                               "`OLD_MODEL.*`, `*.PRETRAINED_PATH`, `NOPE.*`, `*.NOPE`; "
                                               "cfg.COMP_LOSS.WEIGHT, unknown config key TRAIN.BATCH_SIZ")}
    assert found == {"TRAIN.FILE_DIR", "EVAL.HOT_REFRESH", "NOPE.*", "*.NOPE"}
