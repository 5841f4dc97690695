"""Shared fixtures (helpers to import live in helpers.py)."""
import pytest
import torch

from helpers import make_image_list

torch.set_num_threads(1)  # one thread: subprocess and DDP tests run beside the main process


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
