"""Model generations (bct.pipeline.chains through bct.tools.compare --generations): the fractions of a
chain, its refusals, and a 3-generation chain (oracle, AdvBCT, BCT) end to end on the tiny synthetic set."""
import json
import os
import subprocess

import pytest

from bct.evaluation.metrics import compatibility_scores
from bct.pipeline.chains import chain_fractions
from bct.utils.errors import BadInputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYN = os.path.join(REPO, "configs", "synthetic")
TINY = ["TRAIN.BATCH_SIZE", "4", "TRAIN.EPOCHS", "1", "TRAIN.MAX_ITERS", "2", "TRAIN.INPUT_SIZE", "32",
        "EVAL.INPUT_SIZE", "32", "TRAIN.NUM_WORKERS", "0", "EVAL.NUM_WORKERS", "0", "OLD_MODEL.NUM_CLASSES", "3",
        "DEVICE", "cpu"]
OLD = "data/gldv2_train_old_30percent_class.txt"


def test_chain_fractions():
    assert chain_fractions(3, None, OLD) == ((0.3, 0.6, 1.0), "class")
    assert chain_fractions(2, None, OLD) == ((0.3, 1.0), "class")
    assert chain_fractions(4, None, "gldv2_train_old_30percent_data.txt") == ((0.3, 0.6, 0.9, 1.0), "data")
    assert chain_fractions(3, (0.3, 0.5, 0.8), OLD) == ((0.3, 0.5, 0.8), "class")
    with pytest.raises(BadInputError, match="give the fractions with --fractions"):
        chain_fractions(5, None, OLD)
    with pytest.raises(BadInputError, match="starts at 0.25"):
        chain_fractions(0, (0.25, 1.0), OLD)
    with pytest.raises(BadInputError, match="lists 2 fractions"):
        chain_fractions(3, (0.3, 1.0), OLD)
    with pytest.raises(BadInputError, match="not on a gldv2_train_old_<P>percent"):
        chain_fractions(3, None, "data/label_200.txt")
    # One generation is no chain: refused before any training (GENERATIONS=1 FRACTIONS=0.3).
    with pytest.raises(BadInputError, match=r"--fractions 0.3 gives one generation; a chain needs at least two"):
        chain_fractions(1, (0.3,), OLD)
    with pytest.raises(BadInputError, match="at least two generations"):
        chain_fractions(1, None, OLD)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from bct.tools import make_synthetic
    root = tmp_path_factory.mktemp("gen")
    make_synthetic.main(["--out", str(root / "data" / "synthetic"), "--size", "tiny", "--workers", "1"])
    return root


def test_refusals_before_any_training(tmp_path, monkeypatch):
    from bct.tools import compare, make_synthetic
    make_synthetic.main(["--out", str(tmp_path / "data" / "synthetic"), "--size", "tiny", "--workers", "1"])
    monkeypatch.chdir(tmp_path)
    argv = ["--config-dir", SYN, "--generations", "3", "--out", "cmp", *TINY]
    with pytest.raises(BadInputError, match=r"prepare_gldv2 --root .* --fractions 0.3,0.6,1"):
        compare.main(argv)
    make_synthetic.main(["--out", str(tmp_path / "data" / "synthetic"), "--size", "tiny", "--fractions", "0.3,0.6,1"])
    with pytest.raises(BadInputError, match="OLD_MODEL.NUM_CLASSES is 5 but generation 1's list"):
        compare.main(argv + ["OLD_MODEL.NUM_CLASSES", "5"])
    with pytest.raises(BadInputError, match="one seed"):
        compare.main(["--seeds", "1,2", *argv])
    assert not (tmp_path / "cmp" / "seed1234").exists()


@pytest.mark.slow
def test_three_generations_end_to_end(tiny, monkeypatch):
    """GENERATIONS=3 bash scripts/benchmark.sh on the tiny set (its nested lists added by the script),
    then the same run through the compare tool, which reuses everything."""
    from bct.tools import compare
    env = dict(os.environ, GENERATIONS="3", CONFIG_DIR=SYN, GPUS="0", OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "benchmark.sh"), "--datasets", "roxford5k,gldv2",
                           "--out", "cmp", *TINY], cwd=tiny, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "nested split 60%: 6 classes" in proc.stdout
    out, run = tiny / "cmp" / "generations", tiny / "cmp" / "seed1234"
    res = json.load(open(out / "results.json"))
    assert res["fractions"] == [0.3, 0.6, 1.0] and res["classes"] == [3, 6, 10] and res["split"] == "class"
    assert list(res["chains"]) == ["oracle", "advbct", "bct"]
    tag = "chain30_60_100"
    # Generation 3 of a chain trains against its generation 2, with generation 2's statistics (AdvBCT)
    # or none (BCT reads only the old classifier).
    for method in ("advbct", "bct"):
        text = (run / "resnet18" / f"new_{method}_{tag}_gen3" / "config.yaml").read_text()
        assert f"new_{method}_{tag}_gen2/model_final.pth" in text and "NUM_CLASSES: 6" in text
        assert "gldv2_train_nested_100percent_class.txt" in text
    assert f"chain_stats/advbct_{tag}_gen2/radius.json" in \
        (run / "resnet18" / f"new_advbct_{tag}_gen3" / "config.yaml").read_text()
    # Statistics of generation 2 come from generation 2's model on generation 2's list (6 classes).
    radius = json.load(open(run / "chain_stats" / f"advbct_{tag}_gen2" / "radius.json"))
    assert set(radius) == {str(k) for k in range(6)}
    assert not (run / "chain_stats" / f"bct_{tag}_gen2").exists()

    oracle = res["chains"]["oracle"]
    for method in ("advbct", "bct"):
        r = res["chains"][method]
        for ds in ("roxford5k", "gldv2"):
            m, o = r["datasets"][ds]["matrix"], oracle["datasets"][ds]["matrix"]
            assert m[0][0] == o[0][0]  # generation 1 is the same old model in every chain
            assert all(m[i][j] is not None for i in range(3) for j in range(i + 1)) and m[0][2] is None
            assert r["datasets"][ds]["oracle_self"] == [None, o[1][1], o[2][2]]
        # P-scores of generation 2 -> 3 against the oracle of generation 3, as compare computes them.
        p = r["consecutive"][1]
        again = compatibility_scores({d: r["datasets"][d]["matrix"][1][1] for d in ("roxford5k", "gldv2")},
                                     {d: oracle["datasets"][d]["matrix"][2][2] for d in ("roxford5k", "gldv2")},
                                     {d: r["datasets"][d]["matrix"][2][2] for d in ("roxford5k", "gldv2")},
                                     {d: r["datasets"][d]["matrix"][2][1] for d in ("roxford5k", "gldv2")})
        assert p["P_1"] == pytest.approx(again["P_1"]) and p["new"] == "gen3 (100%)"
    md = (out / "results.md").read_text()
    assert "| AdvBCT |" in md and "| Oracle |" in md and "gen3 (100%)→gen1 (30%)" in md and "Wall time" in md
    for name in ("heatmaps.png", "advbct/compat_matrix.png", "bct/compat_matrix.json", "oracle/compat_matrix.md"):
        assert (out / name).stat().st_size > 0, name
    # A second run reuses every model and statistics file.
    final = run / "resnet18" / f"new_advbct_{tag}_gen3" / "model_final.pth"
    mtime = os.path.getmtime(final)
    monkeypatch.chdir(tiny)
    compare.main(["--config-dir", SYN, "--generations", "3", "--fractions", "0.3,0.6,1.0",
                  "--datasets", "roxford5k,gldv2", "--out", "cmp", *TINY])
    assert os.path.getmtime(final) == mtime
    log = (tiny / "cmp" / "log.txt").read_text()
    assert "[advbct gen3] reusing" in log and "generations written to" in log and "epoch 1 iter" not in log


@pytest.mark.slow
def test_a_method_with_its_own_old_model_chains_from_it(tiny, monkeypatch):
    """A method with METHOD.OLD_MODEL_KEYS (the fixed d-Simplex classifier) starts its chain from its own old
    model, trained with those keys; every generation of its chain keeps the same fixed prototypes."""
    import torch

    from bct.config.methods import load_method_cfg, method_names
    from bct.models.loading import load_model
    from bct.tools import compare
    from bct.tools import prepare_gldv2
    own = [m for m in method_names(include_oracle=False) if load_method_cfg(SYN, m).METHOD.OLD_MODEL_KEYS]
    monkeypatch.chdir(tiny)
    if not (tiny / "data" / "synthetic" / "GLDv2" / "gldv2_train_nested_30percent_class.txt").exists():
        prepare_gldv2.main(["--root", "data/synthetic/GLDv2", "--fractions", "0.3,0.6,1.0"])
    compare.main(["--config-dir", SYN, "--generations", "3", "--fractions", "0.3,0.6,1.0", "--methods", ",".join(own),
                  "--datasets", "gldv2", "--out", "cmp", *TINY])
    res = json.load(open(tiny / "cmp" / "generations" / "results.json"))
    for m in own:
        m1 = res["chains"][m]["datasets"]["gldv2"]["matrix"]
        o1 = res["chains"]["oracle"]["datasets"]["gldv2"]["matrix"]
        assert m1[0][0] != o1[0][0] or m1 != o1  # not the shared generation 1
        run = tiny / "cmp" / "seed1234" / "resnet18"
        first = load_model(str(run / f"old_30class_{m}" / "model_final.pth"))
        last = load_model(str(next(run.glob(f"new_{m}_chain*_gen3")) / "model_final.pth"))
        assert first.meta["loss_type"] == "simplex" and torch.equal(first.classifier.weight, last.classifier.weight)
