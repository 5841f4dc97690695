"""The reference implementation's checkpoints and statistics files work here (docs/models.md):
bct.load_model gives the reference model's embeddings, conversion both ways keeps every tensor,
a code-running pickle is refused without running, the test script, extract_feat and train_new take
reference checkpoints, and the reference's statistics files load."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

import bct
from bct.config import load_cfg
from bct.engine.checkpoint import save_checkpoint
from bct.models.loading import load_checkpoint, load_trained_model
from bct.losses import load_old_stats
from bct.models import build_model
from bct.tools import convert_checkpoint
from bct.utils.errors import BadInputError
from bct.utils.safe_pickle import PlainDataUnpickler, RefusedGlobal, _checkpoint_pickle_module
from reference_layout import ReferenceModel, save_like_reference

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYN = os.path.join(REPO, "configs", "synthetic")


@pytest.mark.parametrize("prefix, adversarial, role", [(False, False, "old"), (True, True, "new")])
def test_load_model_gives_the_reference_embeddings(tmp_path, prefix, adversarial, role):
    torch.manual_seed(0)
    ref = ReferenceModel(num_classes=7, adversarial=adversarial, eboundary=adversarial).eval()
    path = save_like_reference(ref, tmp_path / "resnet18_oldmodel_30class_epoch10.pth.tar", module_prefix=prefix,
                               train_type="base" if role == "old" else "adv_compatible")
    model = bct.load_model(str(path))
    assert not model.training
    assert model.meta == {**model.meta, "arch": "resnet18", "emb_dim": 256, "num_classes": 7, "role": role,
                          "source": "reference"}
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert model(x).shape == (3, 256)
        assert (model(x) - ref(x)).abs().max() <= 1e-5


def test_arch_is_read_from_the_tensors(tmp_path):
    path = save_like_reference(ReferenceModel("resnet50", num_classes=3), tmp_path / "misleading_resnet18.pth")
    assert load_checkpoint(str(path))["meta"]["arch"] == "resnet50"
    state = torch.load(path, weights_only=False)  # the test's own file
    del state["model"]["convnet.layer4.1.conv3.weight"]
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(BadInputError, match=r"odd.pth: the backbone tensors \(convnet\.\*, \d+ of them\) match none"):
        load_checkpoint(str(tmp_path / "odd.pth"))


def test_convert_there_and_back_keeps_every_tensor(tmp_path):
    torch.manual_seed(1)
    src = save_like_reference(ReferenceModel(num_classes=5, adversarial=True, eboundary=True), tmp_path / "ref.pth",
                              module_prefix=True)
    convert_checkpoint.main([str(src), str(tmp_path / "bct.pth")])
    converted = torch.load(tmp_path / "bct.pth", weights_only=True)  # only weights and plain data are left
    assert set(converted) == {"model", "meta", "extra", "epoch", "format_version"}
    assert converted["epoch"] == 10 and converted["meta"]["num_classes"] == 5
    assert "adv_loss.discriminator.fc1.weight" in converted["extra"] and "eboundary.weight" in converted["extra"]
    convert_checkpoint.main([str(tmp_path / "bct.pth"), str(tmp_path / "back.pth"), "--to", "reference"])
    original = {k[len("module."):]: v for k, v in torch.load(src, weights_only=False)["model"].items()}
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    assert set(back) == {"epoch", "arch", "model"}
    assert list(back["model"]) == list(original)
    assert all(torch.equal(back["model"][k], v) for k, v in original.items())

    cfg = load_cfg("", ["NEW_MODEL.PRETRAINED", "False", "NEW_MODEL.NUM_CLASSES", "4"])
    model = build_model(cfg, "new")
    save_checkpoint(str(tmp_path / "ours.pth"), {"model": model.state_dict(), "meta": model.meta, "epoch": 3})
    convert_checkpoint.main([str(tmp_path / "ours.pth"), str(tmp_path / "ours_ref.pth"), "--to", "reference"])
    convert_checkpoint.main([str(tmp_path / "ours_ref.pth"), str(tmp_path / "ours_again.pth")])
    again = load_checkpoint(str(tmp_path / "ours_again.pth"))
    assert list(again["model"]) == list(model.state_dict())
    assert all(torch.equal(again["model"][k], v) for k, v in model.state_dict().items())
    with pytest.raises(BadInputError, match="already a bct checkpoint; use --to reference"):
        convert_checkpoint.main([str(tmp_path / "ours.pth"), str(tmp_path / "x.pth")])


class _RunsCode:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Execs(_RunsCode):
    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


@pytest.mark.parametrize("payload, name", [(_RunsCode, f"{os.system.__module__}.system"), (_Execs, "__builtin__.exec")])
def test_a_code_running_pickle_is_refused_without_running(tmp_path, payload, name):
    marker = tmp_path / "ran"
    state = ReferenceModel(num_classes=2).state_dict()
    torch.save({"epoch": 1, "arch": "DistributedDataParallel", "model": state, "config": payload(marker)},
               tmp_path / "evil.pth.tar")
    with pytest.raises(BadInputError) as err:
        bct.load_model(str(tmp_path / "evil.pth.tar"))
    msg = str(err.value)
    assert "\n" not in msg and f"would call {name}" in msg and "nothing was run" in msg
    assert not marker.exists()


@pytest.mark.parametrize("data, refused", [
    (pickle.dumps(getattr, protocol=2), "__builtin__.getattr"),
    (pickle.dumps(torch.nn.Linear, protocol=4), "torch.nn.modules.linear.Linear"),
    (b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R.",
     "_codecs.encode with encoding 'rot13'"),
])
def test_restricted_unpickler_refuses_everything_else(data, refused):
    import io
    for unpickler in (PlainDataUnpickler, _checkpoint_pickle_module().Unpickler):
        with pytest.raises(RefusedGlobal) as err:
            unpickler(io.BytesIO(data)).load()
        assert str(err.value) == f"refused global {refused}"


@pytest.mark.slow
def test_import_bct_does_not_import_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import bct\n"
            "assert 'load_model' in bct.__all__ and bct.__version__\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_reference_checkpoint_in_pretrained_path_points_to_model_path(tmp_path):
    path = save_like_reference(ReferenceModel(num_classes=3), tmp_path / "old.pth.tar")
    cfg = load_cfg("", ["OLD_MODEL.PRETRAINED_PATH", str(path)])
    with pytest.raises(BadInputError, match=r"is a trained model's checkpoint, .*give it as OLD_MODEL.MODEL_PATH"):
        build_model(cfg, "old")
    with pytest.raises(BadInputError, match=r"OLD_MODEL.MODEL_PATH is empty: .*goes in OLD_MODEL.MODEL_PATH"):
        load_trained_model(cfg, "old")
    cfg = load_cfg("", ["OLD_MODEL.MODEL_PATH", str(path), "OLD_MODEL.NUM_CLASSES", "4"])
    with pytest.raises(BadInputError, match=r"has num_classes=3 but the config says OLD_MODEL.NUM_CLASSES=4"):
        load_trained_model(cfg, "old")


def test_reference_statistics_files_load(tmp_path):
    """The layout the reference's extract_feat.py writes: class ids as keys in first-seen order,
    'center' (not re-normalised) and 'radius' (sorted inlier values); a one-inlier class is kept."""
    rng = np.random.default_rng(0)
    classes = [3, 0, 2]
    centres = {c: (rng.normal(size=4) * 0.3).astype(np.float32) for c in classes}
    radius = {3: [0.11, 0.2, 0.31], 0: [0.25], 2: [0.05, 0.4]}
    angle = {3: [0.1, 0.3], 0: [0.2], 2: [0.02, 0.5, 0.6]}
    files = {}
    for name, values in (("gldv2_470369_meta_radius_centernorm.json", radius),
                         ("gldv2_470369_meta_theta_centernorm_after1.5iqr.json", angle)):
        with open(tmp_path / name, "w") as f:
            json.dump({c: {"center": centres[c].tolist(), "radius": values[c]} for c in classes}, f)
        files[name] = str(tmp_path / name)
    stats = load_old_stats(*files.values(), num_classes=5, emb_dim=4)
    for c in classes:
        assert torch.allclose(stats.centers[c], torch.from_numpy(centres[c]))
        assert stats.r_max[c] == pytest.approx(radius[c][-1]) and stats.r_min[c] == pytest.approx(radius[c][0])
        assert stats.theta_max[c] == pytest.approx(angle[c][-1])
    assert stats.valid.tolist() == [False, False, True, True, False]
    assert stats.theta_valid.tolist() == [False, False, True, True, False]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    from bct.tools import make_synthetic
    make_synthetic.main(["--out", str(root), "--size", "tiny"])
    return root


def _eval_opts(tiny, out):
    return ["EVAL.INPUT_SIZE", "32", "EVAL.NUM_WORKERS", "0", "EVAL.CACHE_DIR", f"{out}/cache", "DEVICE", "cpu"]


@pytest.mark.slow
def test_test_script_evaluates_reference_checkpoints(tiny, tmp_path):
    """scripts/test.sh takes the authors' kind of files (old and new model paths) directly."""
    torch.manual_seed(2)
    old = save_like_reference(ReferenceModel(num_classes=3), tmp_path / "resnet18_oldmodel_30class_epoch10.pth.tar",
                              train_type="base")
    new = save_like_reference(ReferenceModel(num_classes=10, adversarial=True, eboundary=True),
                              tmp_path / "resnet18_100class_comp_advbct.pth.tar", module_prefix=True)
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="2", GPUS="0", NEW_MODEL_PATH=str(new),
               OLD_MODEL_PATH=str(old), SAVE_DIR=f"{tmp_path}/eval")
    proc = subprocess.run(["bash", "scripts/test.sh", "landmark", "roxford5k", f"{tiny}/ROxfordParis",
                           *_eval_opts(tiny, tmp_path)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "cross-test M(new, old): E:" in proc.stdout + proc.stderr
    res = json.load(open(f"{tmp_path}/eval/roxford5k.json"))
    assert set(res["headline"]) == {"self", "cross", "old_self"}
    assert res["new_model"] == str(new) and res["old_model"] == str(old)


def test_extract_feat_and_train_new_against_a_reference_old_model(tiny, tmp_path):
    from bct.tools import extract_feat, train
    torch.manual_seed(3)
    old = save_like_reference(ReferenceModel(num_classes=3), tmp_path / "old.pth.tar", train_type="base")
    common = ["TRAIN.ROOT", f"{tiny}/GLDv2", "OUTPUT", str(tmp_path), "TRAIN.BATCH_SIZE", "4", "TRAIN.EPOCHS", "1",
              "TRAIN.INPUT_SIZE", "32", "TRAIN.NUM_WORKERS", "0", "TRAIN.MAX_ITERS", "2", "TRAIN.VAL_FREQ", "0",
              "EVAL.INPUT_SIZE", "32", "EVAL.NUM_WORKERS", "0", "DEVICE", "cpu", "OLD_MODEL.NUM_CLASSES", "3",
              "NEW_MODEL.NUM_CLASSES", "10", "OLD_MODEL.PRETRAINED", "False", "NEW_MODEL.PRETRAINED", "False",
              "OLD_MODEL.MODEL_PATH", str(old),
              "COMP_LOSS.RADIUS_FILE", f"{tmp_path}/stats/radius.json", "EXTRACT.SAVE_DIR", f"{tmp_path}/stats"]
    summary = extract_feat.main(["--cfg", f"{SYN}/extract_feat.yml", *common,
                                 "TRAIN.LIST_FILE", f"{tiny}/GLDv2/gldv2_train_old_30percent_class.txt"])
    assert summary["classes"] == len({line.split()[1] for line in open(f"{tiny}/GLDv2/gldv2_train_old_30percent_class.txt")})
    train.main(["--cfg", f"{SYN}/new_advbct.yml", *common,
                "TRAIN.LIST_FILE", f"{tiny}/GLDv2/gldv2_train_new_100percent_class.txt"])
    ckpt = load_checkpoint(f"{tmp_path}/resnet18/new_advbct/model_final.pth")
    assert ckpt["meta"]["old_model_path"] == str(old) and ckpt["meta"]["role"] == "new"


def test_the_python_example_of_docs_models_runs(tmp_path, monkeypatch, capsys):
    """docs/models.md's embed-a-folder example, run as written on a reference checkpoint."""
    from PIL import Image
    text = open(os.path.join(REPO, "docs", "models.md")).read()
    block = text.split("<!-- example: embed-folder")[1].split("```python\n", 1)[1].split("```", 1)[0]
    save_like_reference(ReferenceModel(num_classes=3), tmp_path / "model.pth")
    os.makedirs(tmp_path / "my_images")
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(tmp_path / "my_images" / f"{i}.jpg")
    (tmp_path / "my_images" / "notes.txt").write_text("not an image")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "docs/models.md", "exec"), {})
    out = capsys.readouterr().out
    assert out.startswith("['0.jpg'")  # an image is its own nearest neighbour
