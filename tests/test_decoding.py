"""The fast decode path and GPU decoding's byte path (bct.data.image, transforms, datasets, gpu_decode):
same RGB conversion of every mode, same errors, same labels and order as the plain decoder; JPEGs
decoded at reduced size; the GPU batch decoder (run with torchvision's CPU JPEG decoder here) and its
per-file CPU fallback; evaluation stays on the plain path unless asked."""
import io
import logging
import re

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from bct.config import load_cfg
from bct.data import gpu_decode
from bct.data.datasets import ImageListDataset, build_image_dataset
from bct.data.gpu_decode import BatchDecoder, gpu_unsupported_reason, raw_collate
from bct.data.image import load_rgb
from bct.data.transforms import TensorTransform, build_transform
from bct.utils.errors import BadInputError
from bct.utils.logger import get_logger


def _photo(path, size=(320, 240), quality=90, mode="RGB", **save):
    """A smooth colour image with some texture, saved at `path` (format from the suffix)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 7.0) * np.cos(yy / 5.0)], -1) * 255
    pil = Image.fromarray(img.astype(np.uint8)).convert(mode)
    pil.save(path, quality=quality, **save) if str(path).endswith(".jpg") else pil.save(path, **save)
    return path


def _same(a, b) -> bool:
    """Equal error messages, up to the object addresses PIL puts in some ("<_io.BytesIO at 0x...>")."""
    return re.sub(r"0x[0-9a-f]+", "0x", str(a)) == re.sub(r"0x[0-9a-f]+", "0x", str(b))


class _Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture
def warnings_seen():
    handler = _Warnings()
    get_logger().addHandler(handler)
    yield handler.lines
    get_logger().removeHandler(handler)


@pytest.fixture
def mixed_folder(tmp_path):
    """Files of every kind a list may hold, and the names of the broken ones."""
    _photo(tmp_path / "rgb.jpg")
    _photo(tmp_path / "big.jpg", size=(1024, 768))
    _photo(tmp_path / "grey.jpg", mode="L")
    _photo(tmp_path / "cmyk.jpg", mode="CMYK")
    _photo(tmp_path / "progressive.jpg", progressive=True)
    _photo(tmp_path / "png_named.jpg", mode="RGBA", format="PNG")
    _photo(tmp_path / "pal.png", size=(50, 40), mode="P")
    deep = (np.arange(40 * 50, dtype=np.uint32).reshape(40, 50) * 30).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "i16.png")
    full = (tmp_path / "rgb.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(full[: len(full) // 2])
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    good = ["rgb.jpg", "big.jpg", "grey.jpg", "cmyk.jpg", "progressive.jpg", "png_named.jpg", "pal.png", "i16.png"]
    return tmp_path, good, ["trunc.jpg", "zero.jpg", "junk.jpg", "missing.jpg"]


# --------------------------------------------------------------------------------------------
# Reduced-size decoding
# --------------------------------------------------------------------------------------------

def test_draft_and_reduce_keep_at_least_the_target(tmp_path):
    _photo(tmp_path / "a.jpg", size=(1024, 768))
    assert load_rgb(str(tmp_path / "a.jpg"), lambda w, h: (224, 224)).size == (512, 384)  # DCT scale 1/2
    assert load_rgb(str(tmp_path / "a.jpg"), lambda w, h: (100, 100)).size == (256, 192)  # 1/4
    _photo(tmp_path / "huge.jpg", size=(1600, 1600))
    # 1/8 by draft (200 x 200), then a box reduce by 4: the image was still 4x the target.
    assert load_rgb(str(tmp_path / "huge.jpg"), lambda w, h: (50, 50)).size == (50, 50)
    assert load_rgb(str(tmp_path / "a.jpg")).size == (1024, 768)


def test_fast_path_converts_every_mode_like_the_plain_decoder(mixed_folder):
    folder, good, _ = mixed_folder
    for name in good:
        plain = load_rgb(str(folder / name))
        fast = load_rgb(str(folder / name), lambda w, h: (w // 4, h // 4))
        assert fast.mode == "RGB", name
        if Image.open(folder / name).format != "JPEG":
            assert np.array_equal(np.asarray(fast), np.asarray(plain)), name  # other formats: the normal path
            continue
        assert fast.size[0] < plain.size[0], name
        small = np.asarray(plain.resize(fast.size, Image.BILINEAR, reducing_gap=None), dtype=np.float32)
        assert np.abs(np.asarray(fast, dtype=np.float32) - small).mean() < 6.0, name


def test_fast_path_errors_are_the_plain_decoder_errors(mixed_folder):
    folder, _, bad = mixed_folder
    for name in bad:
        messages = []
        for hint in (None, lambda w, h: (16, 16)):
            with pytest.raises(BadInputError) as e:
                load_rgb(str(folder / name), hint)
            messages.append(str(e.value))
        assert _same(*messages) and messages[0].startswith(str(folder / name))


def test_min_decoded_size_never_asks_for_fewer_pixels_than_the_output():
    assert TensorTransform(224).min_decoded_size(1024, 768) == (224, 224)
    assert TensorTransform(224, "aspect").min_decoded_size(1024, 768) == (224, 168)
    side, _ = TensorTransform(224, augment=True).min_decoded_size(1024, 768)
    assert side == 334  # the smallest random crop (area 0.6, ratio 3/4) still has 224 pixels a side


def test_fast_transform_matches_the_pil_transform():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 80, 3), dtype=np.uint8))
    for kw in ({}, {"resize": "aspect"}):
        plain, fast = build_transform(32, **kw)(img), build_transform(32, fast=True, **kw)(img)
        assert fast.shape == plain.shape and fast.dtype == torch.float32
        assert (fast - plain).abs().max() < 0.04  # two grey levels at most
    flat = Image.new("RGB", (80, 40), (124, 116, 104))  # ~ the ImageNet mean colour
    assert build_transform(32, fast=True)(flat).abs().max() < 0.02
    assert build_transform(32, augment=True, fast=True)(img).shape == (3, 32, 32)


def test_fast_dataset_keeps_labels_order_and_error_messages(mixed_folder):
    folder, good, bad = mixed_folder
    labels = np.arange(len(good)) * 3
    plain = ImageListDataset(str(folder), good, labels, build_transform(32), list_name="l.txt")
    fast = ImageListDataset(str(folder), good, labels, build_transform(32, fast=True), list_name="l.txt")
    for i in range(len(good)):
        a, b = plain[i], fast[i]
        assert a[1:] == b[1:] == (int(labels[i]), i, True)
        assert a[0].shape == b[0].shape == (3, 32, 32) and (a[0] - b[0]).abs().mean() < 0.1, good[i]
    names = good[:1] + bad
    for skip in (False, True):
        plain = ImageListDataset(str(folder), names, transform=build_transform(32), list_name="l.txt", skip_bad=skip)
        fast = ImageListDataset(str(folder), names, transform=build_transform(32, fast=True), list_name="l.txt",
                                skip_bad=skip)
        for i in range(1, len(names)):
            if skip:
                assert fast[i][3] is False and fast[i][0].abs().sum() == 0 and fast[i][0].shape == (3, 32, 32)
                continue
            with pytest.raises(BadInputError) as a:
                plain[i]
            with pytest.raises(BadInputError) as b:
                fast[i]
            assert _same(a.value, b.value) and f"(line {i + 1} of l.txt)" in str(b.value)


def test_training_is_fast_by_default_and_evaluation_plain_unless_asked(mixed_folder):
    folder, good, _ = mixed_folder
    cfg = load_cfg("")
    train, dec = build_image_dataset(cfg, "train", str(folder), good, size=32)
    assert isinstance(train.transform, TensorTransform) and dec is None
    evaluation, _ = build_image_dataset(cfg, "eval", str(folder), good, size=32)
    assert isinstance(evaluation.transform, T.Compose)
    reference = ImageListDataset(str(folder), good, transform=build_transform(32))
    for i in range(len(good)):
        assert torch.equal(evaluation[i][0], reference[i][0])  # bit for bit the reference's path
    asked, _ = build_image_dataset(load_cfg("", ["DATA.EVAL_FAST_DECODE", "True"]), "eval", str(folder), good, size=32)
    assert isinstance(asked.transform, TensorTransform)
    with pytest.raises(BadInputError, match="DATA.DECODE_DEVICE"):
        load_cfg("", ["DATA.DECODE_DEVICE", "gpu"])


# --------------------------------------------------------------------------------------------
# GPU decoding: byte loading and CPU fallback, run on the CPU
# --------------------------------------------------------------------------------------------

def test_jpeg_header_check(mixed_folder):
    folder, _, _ = mixed_folder
    reasons = {name: gpu_unsupported_reason((folder / name).read_bytes())
               for name in ("rgb.jpg", "grey.jpg", "cmyk.jpg", "progressive.jpg", "png_named.jpg", "trunc.jpg")}
    assert reasons["rgb.jpg"] == reasons["grey.jpg"] == ""
    assert "4 colour components" in reasons["cmyk.jpg"]
    assert "progressive" in reasons["progressive.jpg"]
    assert reasons["png_named.jpg"] == "not a JPEG file"
    assert "end-of-image" in reasons["trunc.jpg"]


def test_no_gpu_decoder_falls_back_to_cpu_workers_with_a_warning(mixed_folder, warnings_seen):
    folder, good, _ = mixed_folder
    cfg = load_cfg("", ["DATA.DECODE_DEVICE", "cuda", "DATA.FAST_DECODE", "False"])
    dataset, decoder = build_image_dataset(cfg, "train", str(folder), good, size=32, device="cpu")
    assert decoder is None and not dataset.gpu_decode
    assert isinstance(dataset.transform, T.Compose)  # the configured CPU path
    assert dataset[0][0].shape == (3, 32, 32)
    assert any("DATA.DECODE_DEVICE cuda" in w and "decoded on the CPU" in w for w in warnings_seen)


def _byte_dataset(folder, names, **kw):
    return ImageListDataset(str(folder), names, np.arange(len(names)), build_transform(32, fast=True),
                            list_name="l.txt", gpu_decode=True, **kw)


def test_batch_decoder_matches_the_cpu_fast_path(mixed_folder, warnings_seen):
    folder, good, _ = mixed_folder
    ds = _byte_dataset(folder, good)
    payloads, labels, indices, ok = raw_collate([ds[i] for i in range(len(good))])
    assert labels.tolist() == list(range(len(good))) and ok.all()
    kinds = {name: p[0].dim() for name, p in zip(good, payloads)}
    assert kinds["rgb.jpg"] == kinds["grey.jpg"] == kinds["big.jpg"] == 1  # bytes, left to the decoder
    assert {kinds[n] for n in ("cmyk.jpg", "progressive.jpg", "png_named.jpg", "pal.png", "i16.png")} == {3}
    decoder = BatchDecoder(ds, "cpu")
    images, good_mask = decoder(payloads, indices)
    assert images.shape == (len(good), 3, 32, 32) and good_mask.all()
    cpu = ImageListDataset(str(folder), good, transform=build_transform(32, fast=True))
    for i, name in enumerate(good):
        assert (images[i] - cpu[i][0]).abs().mean() < 0.1, name
    assert decoder.fallbacks == 5 and sum("decoded on the CPU, not the GPU" in w for w in warnings_seen) == 5


def test_batch_decoder_crops_boxes_and_retries_files_the_gpu_rejects(mixed_folder, monkeypatch, warnings_seen):
    folder, _, _ = mixed_folder
    names = ["rgb.jpg", "big.jpg"]
    boxes = [[10, 20, 330, 260], None]
    ds = _byte_dataset(folder, names, boxes=boxes)
    cpu = ImageListDataset(str(folder), names, transform=build_transform(32, fast=True), boxes=boxes)
    real = gpu_decode._decode_jpeg
    rejected = (folder / "big.jpg").read_bytes()

    def picky(payloads, device):  # a GPU decoder that refuses one file and so fails the whole batch
        if any(p.numpy().tobytes() == rejected for p in payloads):
            raise RuntimeError("nvjpeg: unsupported")
        return real(payloads, device)

    monkeypatch.setattr(gpu_decode, "_decode_jpeg", picky)
    payloads, _, indices, _ = raw_collate([ds[0], ds[1]])
    images, ok = BatchDecoder(ds, "cpu")(payloads, indices)
    assert ok.all()
    for i in range(2):
        assert (images[i] - cpu[i][0]).abs().mean() < 0.1
    assert any("big.jpg (line 2 of l.txt): decoded on the CPU, not the GPU: the GPU decoder failed" in w
               for w in warnings_seen)


def test_batch_decoder_keeps_error_messages_and_skip_bad(mixed_folder):
    folder, _, bad = mixed_folder
    names = ["rgb.jpg"] + bad
    plain = ImageListDataset(str(folder), names, transform=build_transform(32), list_name="l.txt")
    strict = _byte_dataset(folder, names)
    for i in range(1, len(names)):
        with pytest.raises(BadInputError) as a:
            plain[i]
        with pytest.raises(BadInputError) as b:
            strict[i]  # none of these is a whole JPEG: the worker's CPU decoder reports it
        assert _same(a.value, b.value)
    skipping = _byte_dataset(folder, names, skip_bad=True)
    payloads, _, indices, worker_ok = raw_collate([skipping[i] for i in range(len(names))])
    assert worker_ok.tolist() == [True, False, False, False, False]
    images, ok = BatchDecoder(skipping, "cpu")(payloads, indices)
    assert ok.tolist() == [True, False, False, False, False]
    assert images[1:].abs().sum() == 0 and images[0].abs().sum() > 0


def test_gpu_decoded_training_loader_and_extraction_on_cpu(tmp_path, monkeypatch):
    """The whole byte path (workers reading bytes, the decoder after the loader) with the decoder on
    the CPU, as DATA.DECODE_DEVICE cuda runs it on a GPU."""
    from bct.engine.loaders import GpuDecodedLoader, build_train_loader
    from bct.evaluation.extract import extract_features
    from bct.models import build_model
    from helpers import make_image_list

    lst = make_image_list(str(tmp_path), n_classes=2, per_class=4)
    monkeypatch.setattr("bct.data.datasets.gpu_decoding_available", lambda device: "")
    cfg = load_cfg("", ["TRAIN.ROOT", str(tmp_path), "TRAIN.LIST_FILE", lst, "OLD_MODEL.NUM_CLASSES", "2",
                        "TRAIN.BATCH_SIZE", "4", "TRAIN.INPUT_SIZE", "32", "TRAIN.NUM_WORKERS", "1",
                        "DATA.DECODE_DEVICE", "cuda", "DATA.EVAL_DECODE_DEVICE", "cuda"])
    loader, _ = build_train_loader(cfg, 0, "cpu")
    assert isinstance(loader, GpuDecodedLoader) and len(loader) == 2
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(4, 3, 32, 32)] * 2 and [b[3] for b in batches] == [0, 0]
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == [0] * 4 + [1] * 4
    assert sorted(torch.cat([b[2] for b in batches]).tolist()) == list(range(8))  # dataset indices

    from bct.data.lists import read_image_list
    paths, labels = read_image_list(lst, str(tmp_path))
    ds, decoder = build_image_dataset(cfg, "eval", str(tmp_path), paths, labels, size=32)
    assert decoder is not None and ds.gpu_decode
    torch.manual_seed(0)
    model = build_model(load_cfg("", ["NEW_MODEL.PRETRAINED", "False", "NEW_MODEL.NUM_CLASSES", "2"]), "new").eval()
    feats, ok = extract_features(model, ds, batch_size=3, num_workers=0, batch_decoder=decoder)
    ref, _ = extract_features(model, ImageListDataset(str(tmp_path), paths, labels, build_transform(32, fast=True)),
                              batch_size=3, num_workers=0)
    assert ok.all() and feats.shape == (8, 256)
    assert np.min(np.sum(feats * ref, axis=1)) > 0.99  # same images up to the JPEG decoder's rounding


def test_decoded_bytes_survive_a_pickle_round_trip(mixed_folder):
    import pickle
    folder, good, _ = mixed_folder
    ds = pickle.loads(pickle.dumps(_byte_dataset(folder, good)))
    data, note = ds[0][0]
    assert note == "" and bytes(data.numpy()) == (folder / good[0]).read_bytes()
    assert io.BytesIO(bytes(data.numpy())).read(2) == b"\xff\xd8"


def test_a_file_neither_decoder_reads_names_its_line(mixed_folder, monkeypatch):
    from bct.data.image import BadImageError
    folder, _, _ = mixed_folder

    def refuse(*args, **kwargs):
        raise RuntimeError("nvjpeg: bad data")

    def cpu_refuses(data, path, min_size=None):
        raise BadImageError(path, "cannot decode the image (broken data); re-download or remove it")

    monkeypatch.setattr(gpu_decode, "_decode_jpeg", refuse)
    monkeypatch.setattr(gpu_decode, "decode_rgb", cpu_refuses)
    for skip in (False, True):
        ds = _byte_dataset(folder, ["grey.jpg", "rgb.jpg"], skip_bad=skip)
        payloads, _, indices, _ = raw_collate([ds[0], ds[1]])
        if skip:
            images, ok = BatchDecoder(ds, "cpu")(payloads, indices)
            assert ok.tolist() == [False, False] and images.shape == (2, 3, 32, 32) and images.abs().sum() == 0
        else:
            with pytest.raises(BadInputError, match=r"grey.jpg \(line 1 of l.txt\): cannot decode the image"):
                BatchDecoder(ds, "cpu")(payloads, indices)
