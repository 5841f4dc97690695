"""Every log line lands in the log of the run that wrote it: a run's log file lasts exactly as long as the
run (bct.utils.logger.log_file), so after trainings inside a comparison the comparison's own lines (its
results table) go to the comparison's log.txt, not to the last trained model's."""
import logging

import pytest

from bct.utils.logger import get_logger, log_file, setup_logger

from helpers import make_image_list, train_opts

ARCH = "mobilenet_v3_small"  # the quickest backbone to train on the CPU


def _read(folder):
    path = folder / "log.txt"
    return path.read_text() if path.exists() else ""


def test_a_run_log_lasts_as_long_as_the_run(tmp_path):
    outer, run = tmp_path / "compare", tmp_path / "run"
    logger = setup_logger(str(outer))
    logger.info("before the run")
    with log_file(str(run)) as inner:
        inner.info("inside the run")
    logger.info("the results table")
    assert "before the run" in _read(outer) and "the results table" in _read(outer)
    assert "inside the run" not in _read(outer)
    assert _read(run).count("inside the run") == 1 and "results table" not in _read(run)
    setup_logger("")


def test_a_failed_run_gives_the_log_back(tmp_path):
    outer, run = tmp_path / "compare", tmp_path / "run"
    setup_logger(str(outer))
    with pytest.raises(RuntimeError):
        with log_file(str(run)):
            get_logger().info("the run starts")
            raise RuntimeError("the run fails")
    get_logger().info("after the failure")
    assert "after the failure" in _read(outer) and "after the failure" not in _read(run)
    assert not [h for h in get_logger().handlers if isinstance(h, logging.FileHandler)
                and h.baseFilename == str(run / "log.txt")]
    setup_logger("")


def test_nested_runs_and_a_tool_setting_up_its_logger_inside_a_run(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    setup_logger(str(a))
    with log_file(str(b)):
        with log_file(str(c)):
            get_logger().info("in c")
        get_logger().info("in b")
        setup_logger(str(a))  # a tool called as a library sets up its logger again: the run's file stays
        get_logger().info("still in b")
    get_logger().info("in a")
    assert _read(c).splitlines()[-1].endswith("in c") and "in b" not in _read(c)
    assert "in b" in _read(b) and "still in b" in _read(b) and "in a" not in _read(b)
    assert "in a" in _read(a) and "in b" not in _read(a) and "in c" not in _read(a)
    setup_logger("")


@pytest.mark.slow
def test_trainings_inside_a_comparison_log_into_their_own_folders(tmp_path):
    """Two real trainings through bct.pipeline.train_run inside a comparison's log: each training's
    lines go to its folder's log.txt, and the comparison's last line (its table) to the comparison's."""
    from bct.config import load_cfg
    from bct.pipeline.train import train_run

    lst = make_image_list(str(tmp_path / "data"), n_classes=3, per_class=4)
    cmp_dir = tmp_path / "cmp"
    setup_logger(str(cmp_dir))
    runs = []
    for tag in ("first", "second"):
        cfg = load_cfg("", train_opts(tmp_path / "data", lst, tmp_path / "out", 3, TAG=tag,
                                         **{"TRAIN.EPOCHS": 1, "TRAIN.MAX_ITERS": 1, "OLD_MODEL.ARCH": ARCH}))
        runs.append(train_run(cfg, name=tag))
    get_logger().info("| Method | results table |")
    for run, tag in zip(runs, ("first", "second")):
        text = (tmp_path / "out" / ARCH / tag / "log.txt").read_text()
        assert f"[{tag}] training into" in text and "epoch 1 done" in text and "results table" not in text
    own = _read(cmp_dir)
    assert "| Method | results table |" in own and "epoch 1 done" not in own
    setup_logger("")
