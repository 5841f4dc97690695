"""A method added from outside bct (docs/adding_a_method.md): a loss module and a method yml, both
written here into tmp_path, are all it takes to select, train, checkpoint and reload a new method, and
to join the catalogue (BCT_METHODS_PATH) with every catalogue test passing for it."""
import os
import subprocess
import sys

import pytest
import torch

from bct.config import load_cfg
from bct.config.methods import load_method_cfg, method_file, method_names, method_title
from bct.engine.checkpoint import save_checkpoint
from bct.models.loading import load_checkpoint, load_model
from bct.engine.trainer import Trainer, output_dir
from bct.models.build import build_model
from bct.utils.errors import BadInputError
from bct.utils.fileio import file_digest
from bct.utils.logger import setup_logger
from helpers import make_image_list

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTING = os.path.join(REPO, "configs", "synthetic")

# File 1 of the new method: its term, registered under a name of its own.
LOSS_MODULE = '''
import torch
import torch.nn as nn
import torch.nn.functional as F

from bct.losses import register_comp_loss


@register_comp_loss("toy_pull")
class ToyPull(nn.Module):
    """Pull each new embedding towards the old one, by a learnable weight (so it has state to save)."""

    NEEDS_OLD_FEATURES = True

    def __init__(self, weight):
        super().__init__()
        self.log_weight = nn.Parameter(torch.tensor(float(weight)).log())

    @classmethod
    def from_config(cls, cfg, old_classifier=None, stats=None):
        return cls(cfg.COMP_LOSS.WEIGHT)

    def forward(self, feat_new, feat_old, labels, new_classifier, progress=None):
        cos = (F.normalize(feat_new, dim=1) * F.normalize(feat_old, dim=1)).sum(1)
        return {"loss_toy_pull": self.log_weight.exp() * (1 - cos).mean(), "stat_epoch": float(progress.epoch)}
'''

# File 2: the method's yml, as bct/methods/<name>.yml (or a folder of BCT_METHODS_PATH) would hold it.
METHOD_YML = """
METHOD:
  TITLE: 'Toy pull'
MODULES: ['toy_method_loss']
TRAIN:
  TYPE: 'compatible'
COMP_LOSS:
  TYPE: 'toy_pull'
  WEIGHT: 0.5
"""


@pytest.fixture
def toy(tmp_path, monkeypatch, clean_registry):
    (tmp_path / "toy_method_loss.py").write_text(LOSS_MODULE)
    (tmp_path / "toy.yml").write_text(METHOD_YML)
    monkeypatch.syspath_prepend(str(tmp_path))
    return str(tmp_path / "toy.yml")


def _old_model(tmp_path, num_classes):
    cfg = load_cfg(os.path.join(SETTING, "old_model.yml"), ["OLD_MODEL.NUM_CLASSES", str(num_classes),
                                                             "OLD_MODEL.PRETRAINED", "False"])
    torch.manual_seed(0)
    old = build_model(cfg, "old")
    path = str(tmp_path / "old.pth")
    save_checkpoint(path, {"model": old.state_dict(), "meta": old.meta})
    return path


def test_a_method_from_outside_bct_trains_and_reloads(toy, tmp_path):
    lst = make_image_list(str(tmp_path / "data"), n_classes=6, per_class=4)
    old = _old_model(tmp_path, 3)
    opts = ["TRAIN.ROOT", str(tmp_path / "data"), "TRAIN.LIST_FILE", lst, "OLD_MODEL.MODEL_PATH", old,
            "OLD_MODEL.NUM_CLASSES", "3", "NEW_MODEL.NUM_CLASSES", "6", "NEW_MODEL.PRETRAINED", "False",
            "TRAIN.BATCH_SIZE", "8", "TRAIN.EPOCHS", "2", "TRAIN.MAX_ITERS", "2", "TRAIN.NUM_WORKERS", "0",
            "OUTPUT", str(tmp_path / "out"), "DEVICE", "cpu", "TRAIN.VAL_FREQ", "0", "PRINT_FREQ", "100"]
    cfg = load_method_cfg(SETTING, toy, opts)
    assert (cfg.METHOD.NAME, cfg.TAG, cfg.COMP_LOSS.TYPE, method_title(toy)) == ("toy", "new_toy", "toy_pull", "Toy pull")
    setup_logger("")
    trainer = Trainer(cfg, torch.device("cpu"))
    assert trainer.task.needs_old_features  # its flag: the old model runs for it
    hist = trainer.train()
    assert hist[2]["loss_toy_pull"] > 0 and hist[2]["stat_epoch"] == 1.0  # the term saw where training stands
    final = os.path.join(output_dir(cfg), "model_final.pth")
    ckpt = load_checkpoint(final)
    assert list(ckpt["extra"]) == ["comp_loss.log_weight"]
    assert (ckpt["meta"]["method"], ckpt["meta"]["comp_loss"]) == ("toy", "toy_pull")
    assert ckpt["meta"]["old_model_digest"] == file_digest(old)
    model = load_model(final)
    with torch.no_grad():
        emb = model.embed(torch.randn(2, 3, model.meta["input_size"], model.meta["input_size"]))
    assert emb.shape == (2, 256) and torch.isfinite(emb).all()


def test_a_method_module_that_does_not_import_is_one_line(tmp_path):
    (tmp_path / "bad.yml").write_text(METHOD_YML.replace("toy_method_loss", "toy_method_missing"))
    from bct.losses.registry import term_names
    cfg = load_method_cfg(SETTING, str(tmp_path / "bad.yml"))  # a yaml loads without importing MODULES
    with pytest.raises(BadInputError, match=r"MODULES: cannot import toy_method_missing"):
        term_names(cfg)


def test_bct_methods_path_adds_a_folder_to_the_catalogue(toy, tmp_path, monkeypatch):
    folder = tmp_path / "my_methods"
    folder.mkdir()
    (folder / "toy_extra.yml").write_text(METHOD_YML)
    (folder / "bct.yml").write_text(METHOD_YML)  # a catalogue name: the catalogue's file wins
    monkeypatch.setenv("BCT_METHODS_PATH", os.pathsep.join([str(tmp_path / "empty_but_absent_is_an_error"),
                                                            str(folder)]))
    with pytest.raises(BadInputError, match="BCT_METHODS_PATH: .*empty_but_absent_is_an_error is not a folder"):
        method_names()
    monkeypatch.setenv("BCT_METHODS_PATH", str(folder))
    assert method_names()[-1] == "toy_extra" and method_names().count("bct") == 1
    assert method_file("toy_extra") == str(folder / "toy_extra.yml")
    assert not method_file("bct").startswith(str(folder))
    cfg = load_method_cfg(SETTING, "toy_extra")
    assert (cfg.METHOD.NAME, cfg.TAG, cfg.COMP_LOSS.TYPE) == ("toy_extra", "new_toy_extra", "toy_pull")
    assert load_cfg(os.path.join(SETTING, "new_toy_extra.yml")) == cfg  # the setting's file name of it
    monkeypatch.delenv("BCT_METHODS_PATH")
    with pytest.raises(BadInputError, match="method 'toy_extra' is not in the catalogue"):
        method_file("toy_extra")


@pytest.mark.slow
def test_the_catalogue_tests_pass_with_a_method_added_from_outside_bct(tmp_path):
    """Every test marked catalogue (parametrised over the methods or their terms, or reading the
    method list) runs again with a fifth file-pair method present, and passes without a change."""
    (tmp_path / "toy_method_loss.py").write_text(LOSS_MODULE)
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "toy_extra.yml").write_text(METHOD_YML)
    env = dict(os.environ, BCT_METHODS_PATH=str(tmp_path / "methods"),
               PYTHONPATH=os.pathsep.join([str(tmp_path), REPO, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider",
                           "-m", "catalogue and not slow", "tests"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    passed = [line for line in proc.stdout.splitlines() if line.endswith("PASSED") or " PASSED" in line]
    assert any("toy_pull" in line for line in passed)          # the term's own cases (tests/test_losses.py)
    assert any("-toy_extra]" in line for line in passed)       # the method in every setting (tests/test_config.py)
