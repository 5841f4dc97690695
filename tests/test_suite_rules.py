"""The test suite's own rules, read from its source with ast: no test module imports another (shared
code lives in tests/helpers.py, fixtures in tests/conftest.py), and every test that starts or signals
a process carries the slow mark, so `pytest -m "not slow"` stays an inner loop."""
import ast
import glob
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
MODULES = sorted(glob.glob(os.path.join(HERE, "test_*.py")))
TEST_MODULES = {os.path.basename(p)[:-3] for p in MODULES}
# Calls that start or signal a process: subprocess, torch.multiprocessing, a fork, a kill, and the
# forked runs of helpers.start.
SPAWNS = {"Popen", "check_output", "check_call", "start_processes", "spawn", "kill", "killpg", "Process", "start"}


def _tree(path):
    with open(path) as f:
        return ast.parse(f.read())


def _called(node) -> set:
    names = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            f = n.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name == "run" and isinstance(f, ast.Attribute) and ast.unparse(f.value) == "subprocess":
                name = "Popen"
            if name == "start" and isinstance(f, ast.Attribute):
                name = "start()"  # a thread's or a server's start method, not helpers.start's forked run
            names.add(name)
    return names


@pytest.mark.parametrize("path", MODULES, ids=os.path.basename)
def test_no_test_module_imports_another(path):
    imported = set()
    for n in ast.walk(_tree(path)):
        if isinstance(n, ast.Import):
            imported |= {a.name.split(".")[0] for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module:
            imported.add(n.module.split(".")[0])
    wrong = sorted(imported & (TEST_MODULES | {"tests", "conftest"}))
    assert not wrong, f"{os.path.basename(path)} imports {wrong}: move what they share into tests/helpers.py"


def _slow(decorators) -> bool:
    return any("slow" in ast.unparse(d) for d in decorators)


@pytest.mark.parametrize("path", MODULES, ids=os.path.basename)
def test_every_test_that_starts_a_process_is_slow(path):
    tree = _tree(path)
    if any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)
           and "slow" in ast.unparse(n.value) for n in tree.body):
        return
    fixtures = {n.name: _called(n) & SPAWNS for n in tree.body if isinstance(n, ast.FunctionDef)}
    wrong = []
    for n in tree.body:
        if isinstance(n, ast.FunctionDef) and n.name.startswith("test_") and not _slow(n.decorator_list):
            spawns = _called(n) & SPAWNS
            for arg in n.args.args:  # a module fixture that starts the process for it
                spawns |= fixtures.get(arg.arg, set())
            if not _uses_helpers_start(tree):
                spawns.discard("start")  # a thread's start(), not a forked run
            if spawns:
                wrong.append(f"{n.name} ({', '.join(sorted(spawns))})")
    assert not wrong, f"{os.path.basename(path)}: tests that start or signal processes without @pytest.mark.slow: {wrong}"


def _uses_helpers_start(tree) -> bool:
    return any(isinstance(n, ast.ImportFrom) and n.module == "helpers" and any(a.name == "start" for a in n.names)
               for n in tree.body)
