"""bct.tools.export (docs/models.md "Export"): TorchScript always, ONNX when its packages are
installed; the exported file gives the PyTorch embeddings at any batch and image size, a missing
package, a failed check, a checkpoint that cannot rebuild its model or an output over the input is
one line."""
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bct
from bct.config import load_cfg
from bct.engine.checkpoint import save_checkpoint
from bct.models import build_model
from bct.pipeline.export import ONNX_PACKAGES
from bct.tools import export
from bct.tools.common import run
from bct.utils.errors import CheckFailedError
from reference_layout import ReferenceModel, save_like_reference

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # the tests reload TorchScript files


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = build_model(load_cfg("", ["NEW_MODEL.PRETRAINED", "False", "NEW_MODEL.NUM_CLASSES", "5"]), "new")
    model.head.bn.running_mean.normal_()  # eval-mode statistics that matter
    path = str(tmp_path / "model.pth")
    save_checkpoint(path, {"model": model.state_dict(), "meta": model.meta})
    return path


def _expected(path, x, normalize):
    with torch.no_grad():
        emb = bct.load_model(path)(x)
    return (F.normalize(emb, dim=1) if normalize else emb).numpy()


@pytest.mark.parametrize("normalize", [False, True])
def test_torchscript_export_matches_pytorch(checkpoint, tmp_path, normalize, capsys):
    out = str(tmp_path / "model.pt")
    diff = export.main(["--model", checkpoint, "--format", "torchscript", "--out", out, "--input-size", "32",
                        *(["--normalize"] if normalize else [])])
    assert diff <= 1e-5
    assert "max abs difference" in capsys.readouterr().out
    loaded = torch.jit.load(out)
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        got = loaded(x).numpy()
    assert np.abs(got - _expected(checkpoint, x, normalize)).max() <= 1e-5
    if normalize:
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_onnx_export_of_a_reference_checkpoint(tmp_path):
    for name in ONNX_PACKAGES:
        pytest.importorskip(name)
    import onnxruntime
    path = str(save_like_reference(ReferenceModel(num_classes=3), tmp_path / "ref.pth.tar"))
    out = str(tmp_path / "model.onnx")
    assert export.main(["--model", path, "--format", "onnx", "--out", out, "--input-size", "32"]) <= 1e-4
    session = onnxruntime.InferenceSession(out, providers=["CPUExecutionProvider"])
    x = torch.randn(4, 3, 48, 40)
    got = session.run(None, {"images": x.numpy()})[0]
    assert got.shape == (4, 256)
    assert np.abs(got - _expected(path, x, False)).max() <= 1e-4
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp") or p.endswith(".data")] == []


def test_missing_onnx_packages_are_one_line(checkpoint, tmp_path, monkeypatch, capsys):
    import sys
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(SystemExit) as code:
        run(export.main, ["--model", checkpoint, "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err.strip()
    assert code.value.code == 2 and "\n" not in err
    assert err.startswith("error: --format onnx needs ") and "onnxscript" in err and "requirements-onnx.txt" in err


def test_a_failed_check_is_reported(checkpoint, tmp_path, monkeypatch):
    real_load = torch.jit.load

    def off_by_a_bit(*args, **kwargs):
        module = real_load(*args, **kwargs)
        return lambda x: module(x) + 1e-2

    monkeypatch.setattr(torch.jit, "load", off_by_a_bit)
    with pytest.raises(CheckFailedError, match=r"differs from PyTorch by up to 0\.01"):
        export.main(["--model", checkpoint, "--format", "torchscript", "--out", str(tmp_path / "m.pt"),
                     "--input-size", "32"])


def test_a_checkpoint_without_arch_is_one_line(checkpoint, tmp_path, capsys):
    """A checkpoint of another program with `model` and `meta` but no `arch` in its meta."""
    ckpt = torch.load(checkpoint, weights_only=True)
    del ckpt["meta"]["arch"]
    odd = tmp_path / "odd.pth"
    torch.save(ckpt, odd)
    with pytest.raises(SystemExit) as code:
        run(export.main, ["--model", str(odd), "--format", "torchscript", "--out", str(tmp_path / "m.pt")])
    err = capsys.readouterr().err.strip()
    assert code.value.code == 2 and "\n" not in err
    assert f"--model {odd}: its 'meta' block lacks arch" in err and not (tmp_path / "m.pt").exists()


def test_export_never_writes_over_its_input(checkpoint, tmp_path, capsys):
    before = open(checkpoint, "rb").read()
    with pytest.raises(SystemExit) as code:
        run(export.main, ["--model", checkpoint, "--format", "torchscript", "--out", checkpoint])
    err = capsys.readouterr().err.strip()
    assert code.value.code == 2 and err.startswith(f"error: --out {checkpoint} is the input of --model ({checkpoint})")
    assert open(checkpoint, "rb").read() == before
