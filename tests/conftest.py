"""Shared fixtures (helpers to import live in helpers.py)."""
import pytest
import torch

from helpers import make_earlier, make_image_list, make_world

torch.set_num_threads(1)  # one thread: subprocess and DDP tests run beside the main process


def pytest_collection_modifyitems(config, items):
    """Files holding a test marked `first` (the minutes-long runs) come first, then the other files by
    their number of tests, most first, each file's tests in their own order. The suite's workers
    (scripts/run_tests.sh: --dist loadfile --no-loadscope-reorder) take whole files in this order, so
    the longest runs start at once on their own workers instead of last."""
    files = {}
    for item in items:
        files.setdefault(item.nodeid.split("::")[0], []).append(item)
    order = sorted(files.values(), key=lambda its: (not any(i.get_closest_marker("first") for i in its), -len(its)))
    items[:] = [item for its in order for item in its]


@pytest.fixture
def tiny_list(tmp_path):
    return tmp_path, make_image_list(str(tmp_path))


@pytest.fixture
def clean_registry():
    """Terms a test registers from its own modules leave the loss registry (and sys.modules) with it."""
    import sys

    from bct.losses import COMP_LOSS_REGISTRY
    names, modules = dict(COMP_LOSS_REGISTRY), set(sys.modules)
    yield
    COMP_LOSS_REGISTRY.clear()
    COMP_LOSS_REGISTRY.update(names)
    for name in set(sys.modules) - modules:
        del sys.modules[name]


@pytest.fixture(scope="module")
def w(tmp_path_factory):
    """The bad-input world (helpers.make_world): 8 images, an old and a new checkpoint, statistics and
    a revisited-format test set."""
    return make_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def earlier(w, tmp_path_factory):
    """Outputs of successful runs on the world: a training folder, a statistics folder and a test result."""
    return make_earlier(w, tmp_path_factory.mktemp("earlier"))


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (pytestmark = pytest.mark.usefixtures("one_thread")): on a shared
    2-core machine a second spinning thread only slows these runs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
