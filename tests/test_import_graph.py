"""The package's import graph, read from the source with ast, with no exemptions: no import cycle among
bct modules, no submodule imports its own package (it imports the submodule that defines the name),
no tool imports another tool (shared CLI helpers live in bct/tools/common.py), nothing outside the
tools imports them, and data flows one way: config -> data -> models -> losses -> engine -> evaluation
/ index -> pipeline -> tools (utils below everything). Evaluation and the index never import the engine
(a model is loaded by bct.models.loading) and models never import losses; the one upward edge is the
engine's training-time validation, which calls evaluation. Loading a yaml imports neither torch nor the loss registry."""
import ast
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = {"utils": 0, "config": 1, "data": 2, "models": 3, "losses": 4, "engine": 5, "evaluation": 6, "index": 6,
          "pipeline": 7, "tools": 8}
ALLOWED_UP = {("engine", "evaluation")}  # validation during training runs the evaluation protocol
FORBIDDEN = {("evaluation", "engine"), ("index", "engine"), ("models", "losses")}


def _modules() -> dict:
    out = {}
    for root, _, files in os.walk(os.path.join(REPO, "bct")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(root, f)
                name = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                out[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str:
    """The bct module an import names (``from bct.x import y`` names bct.x.y when that is a module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports(module: str) -> set:
    tree = ast.parse(open(MODULES[module]).read(), MODULES[module])
    package = module if MODULES[module].endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] if base else []
        else:
            continue
        for name in names:
            if name == "bct" or name.startswith("bct."):
                target = _resolve(name)
                if target and target != module:
                    found.add(target)
    return found


GRAPH = {m: _imports(m) for m in MODULES}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_graph_is_read():
    assert "bct.pipeline.train" in GRAPH and "bct.engine.trainer" in GRAPH["bct.pipeline.train"]


def test_no_import_cycle():
    """Depth-first search over the module graph; a back edge is a cycle (the parent package's
    __init__ importing its own modules lazily is not an edge: it imports nothing at module level)."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(GRAPH.get(m, ())):
            if state.get(n) == "open":
                cycle = stack[stack.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)


def test_no_tool_imports_another_tool():
    for m, targets in GRAPH.items():
        if _package(m) == "tools":
            others = sorted(t for t in targets if _package(t) == "tools" and t not in ("bct.tools", "bct.tools.common"))
            assert not others, f"{m} imports {others}; shared CLI helpers go in bct/tools/common.py, the rest in bct.pipeline"


def test_nothing_outside_the_tools_imports_them():
    for m, targets in GRAPH.items():
        if _package(m) != "tools":
            tools = sorted(t for t in targets if _package(t) == "tools")
            assert not tools, f"{m} imports {tools}: nothing imports the tools"


def test_layers_flow_one_way():
    for m, targets in GRAPH.items():
        src = _package(m)
        if src not in LAYERS:  # the top-level bct package resolves bct.load_model on first use
            continue
        for t in targets:
            dst = _package(t)
            if dst not in LAYERS or dst == src:
                continue
            assert (src, dst) not in FORBIDDEN, f"{m} imports {t}: {src} never imports {dst}"
            assert LAYERS[dst] <= LAYERS[src] or (src, dst) in ALLOWED_UP, \
                f"{m} imports {t}: {src} sits below {dst} (config -> data -> models -> losses -> engine -> " \
                "evaluation/index -> pipeline -> tools)"


def test_no_submodule_imports_its_own_package():
    """``from bct.index import Index`` inside bct/index/foo.py runs the package's __init__ from within
    the package (a circle in waiting): import the submodule that defines the name instead."""
    for m, targets in GRAPH.items():
        if MODULES[m].endswith("__init__.py"):
            continue
        own = [p for p in targets if m.startswith(p + ".")]
        assert not own, f"{m} imports its own package {own[0]}: import the submodule that defines the name"


def test_the_rule_catches_a_package_import():
    """The rule reads a name imported from the package itself as an import of the package."""
    assert _resolve("bct.index.Index") == "bct.index" and _resolve("bct.index.layout") == "bct.index.layout"


@pytest.mark.slow
def test_loading_a_yaml_imports_neither_torch_nor_the_losses(tmp_path):
    cfg = tmp_path / "c.yml"
    cfg.write_text("TRAIN:\n  TYPE: compatible\nCOMP_LOSS:\n  TYPE: bct_limit\n  EXTRA_TERMS: ['adversarial']\n")
    code = ("import sys\n"
            "import bct.config\n"
            f"cfg = bct.config.load_cfg({str(cfg)!r}, ['TRAIN.EPOCHS', '3'])\n"
            "from bct.config.methods import load_method_cfg, method_names\n"
            f"load_method_cfg({os.path.join(REPO, 'configs', 'synthetic')!r}, method_names()[-1])\n"
            "print(sorted(m for m in ('torch', 'bct.losses') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=REPO),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
