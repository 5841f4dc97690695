"""scripts/own.sh on scikit-learn's 1,797 UCI handwritten digits (inside its wheel), as a folder per
class, without ImageNet weights: the new model beats the old one and meets the BCT criterion."""
import pytest

from helpers import own_sh_on_real_set

pytestmark = [pytest.mark.slow, pytest.mark.first]

# 16-pixel inputs keep the test short (the digits have 8x8 pixels). 8 epochs, not 4: at 4 the margin
# over the old self-test swings by points across seeds and machines, and the configs' own seed
# misses the criterion on one machine (docs/own_images.md, "From seed to seed").
OPTS = ["TRAIN.INPUT_SIZE", "16", "EVAL.INPUT_SIZE", "16", "TRAIN.EPOCHS", "8", "NUM_THREADS", "1"]


def test_own_sh_on_the_digits(tmp_path):
    """The default command's result on the digits; a second run with other settings is refused with
    own.sh's own knobs as the advice."""
    own_sh_on_real_set("digits", OPTS, tmp_path, refuse_other=True)
