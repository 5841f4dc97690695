"""Models (docs/method.md) and checkpoints: shapes, margins, weight files, offline message,
atomic save, weights_only load, and mismatch errors that name both sides."""
import os

import pytest
import torch

from bct.config import load_cfg
from bct.engine.checkpoint import save_checkpoint
from bct.models.loading import check_meta, load_checkpoint, load_trained_model
from bct.models import build_model, build_model_from_meta
from bct.models.heads import CosineClassifier
from bct.utils.errors import BadInputError


def _cfg(*opts):
    return load_cfg("", ["OLD_MODEL.PRETRAINED", "False", "NEW_MODEL.PRETRAINED", "False", *opts])


@pytest.mark.parametrize("arch,feat", [("resnet18", 512), ("resnet34", 512), ("resnet50", 2048)])
def test_backbones_give_256_d_embedding(arch, feat):
    model = build_model(_cfg("NEW_MODEL.ARCH", arch, "NEW_MODEL.NUM_CLASSES", "7"), "new").eval()
    assert model.head.fc.in_features == feat and model.head.fc.bias is None
    emb, logits = model(torch.randn(2, 3, 32, 32), with_logits=True)
    assert emb.shape == (2, 256) and logits.shape == (2, 7)
    assert torch.allclose(model.embed(torch.randn(3, 3, 32, 32)).norm(dim=1), torch.ones(3), atol=1e-5)


def test_other_torchvision_models_work():
    model = build_model(_cfg("NEW_MODEL.ARCH", "mobilenet_v3_small", "NEW_MODEL.NUM_CLASSES", "3"), "new").eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 256)
    with pytest.raises(BadInputError, match="NEW_MODEL.ARCH 'resnet9000' is not a torchvision"):
        build_model(_cfg("NEW_MODEL.ARCH", "resnet9000"), "new")


@pytest.mark.parametrize("kind", ["arcface", "cosface"])
def test_cosine_classifier_margin_only_on_target(kind):
    torch.manual_seed(0)
    clf = CosineClassifier(8, 5, kind, scale=30.0, margin=0.3)
    emb, labels = torch.randn(4, 8), torch.tensor([0, 1, 2, 3])
    plain, margin = clf(emb), clf(emb, labels)
    cos = plain / 30.0
    target = cos[torch.arange(4), labels]
    expected = torch.cos(torch.acos(target) + 0.3) if kind == "arcface" else target - 0.3
    assert torch.allclose(margin[torch.arange(4), labels] / 30.0, expected, atol=1e-5)
    mask = torch.ones_like(plain, dtype=torch.bool)
    mask[torch.arange(4), labels] = False
    assert torch.allclose(margin[mask], plain[mask])


def test_offline_pretrained_message(monkeypatch):
    import torchvision

    def no_network(self, *a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", no_network)
    cfg = load_cfg("", ["OLD_MODEL.PRETRAINED", "True"])
    with pytest.raises(BadInputError, match=r"ImageNet weights for resnet18 are not available .*download https://.*resnet18.*put it at .*OLD_MODEL.PRETRAINED_PATH"):
        build_model(cfg, "old")


def test_local_pretrained_file(tmp_path):
    import torchvision
    ref = torchvision.models.resnet18(weights=None)
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, tmp_path / "w.pth")
    model = build_model(load_cfg("", ["OLD_MODEL.PRETRAINED_PATH", str(tmp_path / "w.pth")]), "old")
    assert torch.equal(model.backbone.conv1.weight, ref.conv1.weight)
    with pytest.raises(BadInputError, match="weight file .*missing.pth does not exist"):
        build_model(load_cfg("", ["OLD_MODEL.PRETRAINED_PATH", str(tmp_path / "missing.pth")]), "old")


def _save_model(path, cfg, role="old"):
    model = build_model(cfg, role)
    save_checkpoint(str(path), {"model": model.state_dict(), "meta": dict(model.meta), "epoch": 0})
    return model


def test_checkpoint_round_trip_and_rebuild_from_meta(tmp_path):
    cfg = _cfg("OLD_MODEL.NUM_CLASSES", "5", "LOSS.TYPE", "arcface")
    model = _save_model(tmp_path / "m.pth", cfg)
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []
    ckpt = load_checkpoint(str(tmp_path / "m.pth"))
    rebuilt = build_model_from_meta(ckpt["meta"])
    rebuilt.load_state_dict(ckpt["model"])
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(model.eval()(x), rebuilt.eval()(x))
    assert isinstance(rebuilt.classifier, CosineClassifier)
    loaded, meta = load_trained_model(load_cfg("", ["OLD_MODEL.NUM_CLASSES", "5", "OLD_MODEL.MODEL_PATH",
                                                   str(tmp_path / "m.pth")]), "old")
    assert not loaded.training and meta["num_classes"] == 5


def test_mismatch_errors_name_both_sides(tmp_path):
    _save_model(tmp_path / "m.pth", _cfg("OLD_MODEL.NUM_CLASSES", "5"))
    cfg = load_cfg("", ["OLD_MODEL.NUM_CLASSES", "6", "OLD_MODEL.MODEL_PATH", str(tmp_path / "m.pth")])
    with pytest.raises(BadInputError, match=r"has num_classes=5 but the config says OLD_MODEL.NUM_CLASSES=6"):
        load_trained_model(cfg, "old")
    cfg = load_cfg("", ["OLD_MODEL.NUM_CLASSES", "5", "OLD_MODEL.ARCH", "resnet34",
                        "OLD_MODEL.MODEL_PATH", str(tmp_path / "m.pth")])
    with pytest.raises(BadInputError, match=r"has arch='resnet18' but the config says OLD_MODEL.ARCH='resnet34'"):
        load_trained_model(cfg, "old")
    with pytest.raises(BadInputError, match="MODEL.EMB_DIM"):
        check_meta({"emb_dim": 128}, {"emb_dim": 256}, "x.pth", "OLD_MODEL")


def test_missing_truncated_and_code_carrying_checkpoints(tmp_path):
    with pytest.raises(BadInputError, match="checkpoint .*nope.pth does not exist"):
        load_checkpoint(str(tmp_path / "nope.pth"))
    _save_model(tmp_path / "m.pth", _cfg("OLD_MODEL.NUM_CLASSES", "5"))
    data = (tmp_path / "m.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="cannot read checkpoint .*cut.pth .*truncated, corrupt"):
        load_checkpoint(str(tmp_path / "cut.pth"))
    torch.save({"model": {}, "meta": {}, "evil": _Evil()}, tmp_path / "evil.pth")
    with pytest.raises(BadInputError, match="cannot read checkpoint .*evil.pth"):
        load_checkpoint(str(tmp_path / "evil.pth"))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_load_model_tells_the_input_of_a_checkpoint_without_it(tmp_path):
    """Checkpoints written before the meta held the input size and normalisation: the size comes from
    the stored config, the normalisation is ImageNet's (every bct and reference model's)."""
    from bct.models.loading import load_model
    cfg = load_cfg("", ["OLD_MODEL.NUM_CLASSES", "3", "OLD_MODEL.PRETRAINED", "False"])
    model = build_model(cfg, "old")
    save_checkpoint(str(tmp_path / "a.pth"), {"model": model.state_dict(), "meta": model.meta,
                                              "config": "TRAIN:\n  INPUT_SIZE: 64\n"})
    meta = load_model(str(tmp_path / "a.pth")).meta
    assert (meta["input_size"], meta["mean"], meta["std"]) == (64, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    save_checkpoint(str(tmp_path / "b.pth"), {"model": model.state_dict(), "meta": model.meta})
    assert load_model(str(tmp_path / "b.pth")).meta["input_size"] == 224


def _any_mode_images():
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 256, (30, 40, 4), dtype=np.uint8), "RGBA")
    yield "RGBA", rgba
    for mode in ("L", "LA", "P", "CMYK", "1", "I", "F", "RGB"):
        yield mode, rgba.convert(mode)
    yield "I;16", Image.fromarray(rng.integers(0, 65536, (30, 40), dtype=np.uint16))
    trans = rgba.convert("RGB").convert("P")
    trans.info["transparency"] = 0
    yield "P+transparency", trans


def test_load_model_transform_takes_any_image_mode_and_arrays_as_the_tools_do(tmp_path):
    """Any PIL mode is converted as the tools' decoder converts a file (bct.data.image.to_rgb), then
    resized and normalised as the model expects; an HWC uint8 array is the image it holds."""
    import numpy as np
    from PIL import Image

    from bct.data.image import to_rgb
    from bct.data.transforms import build_transform
    from bct.models.loading import load_model
    cfg = load_cfg("", ["OLD_MODEL.NUM_CLASSES", "3", "OLD_MODEL.PRETRAINED", "False"])
    model = build_model(cfg, "old")
    save_checkpoint(str(tmp_path / "m.pth"), {"model": model.state_dict(), "meta": {**model.meta, "input_size": 32}})
    loaded = load_model(str(tmp_path / "m.pth"))
    tools = build_transform(32, "squash")
    for mode, img in _any_mode_images():
        got = loaded.transform(img)
        assert got.shape == (3, 32, 32) and torch.equal(got, tools(to_rgb(img))), mode
    rgb = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    assert torch.equal(loaded.transform(rgb), tools(Image.fromarray(rgb)))
    grey = rgb[:, :, 0]
    assert torch.equal(loaded.transform(grey), loaded.transform(grey[:, :, None]))
    assert torch.equal(loaded.transform(grey), tools(Image.fromarray(grey).convert("RGB")))
    rgba = np.concatenate([rgb, np.full((30, 40, 1), 255, np.uint8)], axis=2)
    assert torch.equal(loaded.transform(rgba), tools(Image.fromarray(rgb)))
    with pytest.raises(ValueError, match=r"HWC uint8 with 1, 3 or 4 channels.*float32 of shape \(30, 40, 3\)"):
        loaded.transform(rgb.astype(np.float32))
    with pytest.raises(TypeError, match="expected a PIL image or an HWC uint8 numpy array, got list"):
        loaded.transform([1, 2, 3])
