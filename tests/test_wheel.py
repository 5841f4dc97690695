"""The wheel carries the method catalogue: `pip install .` (not editable) into a fresh environment, then,
from another folder, the catalogue is listed, `bct.load_model` reads a checkpoint and a catalogue method
trains for a couple of iterations. The environment sees the system's packages (torch, ...) and the
install uses neither the network nor build isolation, so it takes seconds."""
import glob
import os
import shutil
import site
import subprocess
import sys

import pytest

from helpers import make_image_list

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Run by the installed package, in a folder that holds no bct source.
SCRIPT = '''
import os, sys
import numpy as np
import torch
from PIL import Image
import bct
from bct.config.methods import load_method_cfg, method_names
from bct.engine.checkpoint import save_checkpoint
from bct.engine.trainer import Trainer, output_dir
from bct.losses.registry import needs_stats
from bct.models.build import build_model
from bct.utils.logger import setup_logger

root, lst, want = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
assert not os.path.abspath(bct.__file__).startswith({repo!r}), bct.__file__
assert sorted(method_names()) == sorted(want), (method_names(), want)

setting = os.path.join(root, "setting")
os.makedirs(setting)
with open(os.path.join(setting, "Base-new.yml"), "w") as f:
    f.write("TAG: 'new_{{method}}'\\nOLD_MODEL:\\n  NUM_CLASSES: 2\\n  PRETRAINED: False\\n"
            "NEW_MODEL:\\n  NUM_CLASSES: 4\\n  PRETRAINED: False\\n")
opts = ["TRAIN.ROOT", os.path.dirname(lst), "TRAIN.LIST_FILE", lst, "TRAIN.BATCH_SIZE", "8", "TRAIN.EPOCHS", "1",
        "TRAIN.MAX_ITERS", "2", "TRAIN.NUM_WORKERS", "0", "TRAIN.INPUT_SIZE", "32", "TRAIN.VAL_FREQ", "0",
        "OUTPUT", os.path.join(root, "out"), "DEVICE", "cpu", "PRINT_FREQ", "100", "USE_AMP", "False"]

# An untrained old model, read back by bct.load_model.
cfg = load_method_cfg(setting, "oracle", opts)
torch.manual_seed(0)
old = build_model(cfg, "old")
old_path = os.path.join(root, "old.pth")
save_checkpoint(old_path, {{"model": old.state_dict(), "meta": old.meta}})
model = bct.load_model(old_path)
emb = model.embed(model.transform(Image.new("L", (40, 30), 128)).unsqueeze(0))
assert emb.shape == (1, 256) and torch.isfinite(emb).all()

# A compatible method of the catalogue that needs no old-class statistics trains two iterations.
method = next(m for m in method_names()
              if load_method_cfg(setting, m, opts).TRAIN.TYPE != "base" and not needs_stats(load_method_cfg(setting, m, opts)))
cfg = load_method_cfg(setting, method, opts + ["OLD_MODEL.MODEL_PATH", old_path])
setup_logger("")
Trainer(cfg, torch.device("cpu")).train()
final = os.path.join(output_dir(cfg), "model_final.pth")
from bct.models.loading import load_checkpoint
assert load_checkpoint(final)["meta"]["method"] == method and bct.load_model(final).input_size == 32
print("ok", method)
'''


@pytest.mark.slow
def test_the_installed_wheel_lists_loads_and_trains(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(os.path.join(REPO, "bct"), src / "bct", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(os.path.join(REPO, name), src / name)
    venv = tmp_path / "venv"
    # Without a pip of its own: the system's pip and setuptools (seen through the system site) install.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    if sys.prefix != sys.base_prefix:
        # The tests run inside a virtual environment: the new one sees its packages too (a .pth line
        # each), since --system-site-packages reaches only the base interpreter's.
        purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                 capture_output=True, text=True, check=True).stdout.strip()
        with open(os.path.join(purelib, "outer_env.pth"), "w") as f:
            f.write("".join(p + "\n" for p in site.getsitepackages()))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(src)],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]

    lst = make_image_list(str(tmp_path / "data"), n_classes=4, per_class=4)
    want = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(REPO, "bct", "methods", "*.yml")))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "run.py").write_text(SCRIPT.format(repo=REPO))
    proc = subprocess.run([python, "run.py", str(elsewhere), lst, ",".join(want)], cwd=str(elsewhere), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("ok ")
