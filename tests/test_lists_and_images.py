"""List reading, image decoding to RGB, transforms and the image-list dataset (bct.data)."""
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from bct.data.datasets import ImageListDataset
from bct.data.image import load_rgb
from bct.data.lists import check_labels, read_gt_list, read_image_list, read_index_list
from bct.data.transforms import build_transform, pad_collate
from bct.utils.errors import BadInputError


def _write(path, text):
    path.write_text(text)
    return str(path)


# --------------------------------------------------------------------------------------------
# Lists
# --------------------------------------------------------------------------------------------

def test_read_image_list_returns_paths_and_int64_labels(tmp_path):
    lst = _write(tmp_path / "l.txt", "train/a/b/c/x.jpg 3\ntrain/a/b/d/y.jpg 0\n  z.jpg\t7  \n\n")
    paths, labels = read_image_list(lst, str(tmp_path))
    assert paths == ["train/a/b/c/x.jpg", "train/a/b/d/y.jpg", "z.jpg"]
    assert labels.dtype == np.int64 and labels.tolist() == [3, 0, 7]


@pytest.mark.parametrize("text, line, words", [
    ("a.jpg 1\nb.jpg\n", 2, "expected 2 fields"),
    ("a.jpg 1\nb.jpg 1 2\n", 2, "expected 2 fields"),
    ("a.jpg x\n", 1, "not an integer"),
    ("a.jpg 1\nb.jpg 2.5\n", 2, "not an integer"),
    ("a.jpg 1\nb.jpg -1\n", 2, "negative"),
    ("a.jpg 1\n/etc/passwd 1\n", 2, "absolute"),
    ("a.jpg 1\nb.jpg 1\n../../secret.jpg 0\n", 3, "'..'"),
    ("a.jpg 1\n\nb.jpg 1\n", 2, "expected 2 fields"),
])
def test_bad_list_lines_name_file_and_line(tmp_path, text, line, words):
    lst = _write(tmp_path / "bad.txt", text)
    with pytest.raises(BadInputError) as e:
        read_image_list(lst, str(tmp_path))
    msg = str(e.value)
    assert f"bad.txt:{line}:" in msg and words in msg and "\n" not in msg


def test_duplicate_path_names_both_lines(tmp_path):
    lst = _write(tmp_path / "dup.txt", "a.jpg 1\nb.jpg 2\nc.jpg 3\nb.jpg 2\n")
    with pytest.raises(BadInputError, match=r"dup.txt:4: path b.jpg already listed at line 2"):
        read_image_list(lst, str(tmp_path))


def test_missing_and_empty_list_say_what_to_do(tmp_path):
    with pytest.raises(BadInputError, match=r"does not exist.*python -m bct.tools.prepare_gldv2 --root"):
        read_image_list(str(tmp_path / "nope.txt"), str(tmp_path))
    with pytest.raises(BadInputError, match="empty"):
        read_image_list(_write(tmp_path / "empty.txt", "\n\n"), str(tmp_path))
    with pytest.raises(BadInputError, match="not a folder"):
        read_image_list(_write(tmp_path / "ok.txt", "a.jpg 0\n"), str(tmp_path / "missing_root"))


def test_check_labels_names_line_label_and_key(tmp_path):
    check_labels(np.array([0, 4, 2]), 5, "l.txt")
    with pytest.raises(BadInputError) as e:
        check_labels(np.array([0, 4, 7, 9]), 5, "l.txt", key="OLD_MODEL.NUM_CLASSES")
    msg = str(e.value)
    assert "l.txt:3" in msg and "label 7" in msg and "NUM_CLASSES = 5" in msg
    assert "set OLD_MODEL.NUM_CLASSES to 10" in msg


def test_index_and_gt_lists(tmp_path):
    idx = _write(tmp_path / "g.txt", "index/a.jpg 0\nindex/b.jpg 1\n")
    assert read_index_list(idx) == ["index/a.jpg", "index/b.jpg"]
    gt = _write(tmp_path / "gt.txt", "test/q.jpg 0 1,0\ntest/r.jpg 1 1\n")
    assert read_gt_list(gt) == (["test/q.jpg", "test/r.jpg"], [[1, 0], [1]])
    with pytest.raises(BadInputError, match=r"g2.txt:2: row 5 where 1 was expected"):
        read_index_list(_write(tmp_path / "g2.txt", "a.jpg 0\nb.jpg 5\n"))
    with pytest.raises(BadInputError, match=r"gt2.txt:1: gallery row 'x' is not an integer"):
        read_gt_list(_write(tmp_path / "gt2.txt", "q.jpg 0 1,x\n"))


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------

def _rgb_array(path):
    img = load_rgb(str(path))
    assert img.mode == "RGB"
    return np.asarray(img)


def test_every_mode_loads_as_rgb(tmp_path):
    Image.new("L", (5, 4), 77).save(tmp_path / "l.png")
    assert _rgb_array(tmp_path / "l.png").shape == (4, 5, 3)
    assert (_rgb_array(tmp_path / "l.png") == 77).all()

    Image.new("1", (5, 4), 1).save(tmp_path / "one.png")
    assert (_rgb_array(tmp_path / "one.png") == 255).all()

    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.save(tmp_path / "p.png")
    assert _rgb_array(tmp_path / "p.png")[0, 0].tolist() == [10, 200, 30]
    pal.save(tmp_path / "p_transparent.png", transparency=1)
    assert _rgb_array(tmp_path / "p_transparent.png")[0, 0].tolist() == [255, 255, 255]

    rgba = Image.new("RGBA", (4, 4), (200, 0, 0, 0))
    rgba.putpixel((1, 1), (200, 0, 0, 255))
    rgba.save(tmp_path / "rgba.png")
    arr = _rgb_array(tmp_path / "rgba.png")
    assert arr[0, 0].tolist() == [255, 255, 255] and arr[1, 1].tolist() == [200, 0, 0]

    Image.new("LA", (3, 3), (40, 255)).save(tmp_path / "la.png")
    assert (_rgb_array(tmp_path / "la.png") == 40).all()

    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    red = _rgb_array(tmp_path / "cmyk.jpg")[4, 4]
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_16bit_and_float_images_are_rescaled_not_clipped(tmp_path):
    deep = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "i16.png")
    assert Image.open(tmp_path / "i16.png").mode.startswith("I")
    assert _rgb_array(tmp_path / "i16.png")[0, :, 0].tolist() == [0, 1, 128, 255]

    Image.fromarray(deep.astype(np.int32), mode="I").save(tmp_path / "i32.tif")
    assert _rgb_array(tmp_path / "i32.tif")[0, :, 1].tolist() == [0, 1, 128, 255]

    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), mode="F").save(tmp_path / "f.tif")
    assert _rgb_array(tmp_path / "f.tif")[0, :, 2].tolist() == [0, 128, 255]


def _jpeg(path, size=(64, 48)):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=90)
    return path


def test_bad_files_raise_naming_the_file(tmp_path):
    full = _jpeg(tmp_path / "full.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(full[: len(full) // 2])
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "junk.jpg").write_bytes(b"this is not an image at all")
    for name, words in [("trunc.jpg", "cannot decode"), ("zero.jpg", "empty"), ("junk.jpg", "cannot decode"),
                        ("missing.jpg", "not found")]:
        with pytest.raises(BadInputError) as e:
            load_rgb(str(tmp_path / name))
        assert str(e.value).startswith(str(tmp_path / name)) and words in str(e.value)


# --------------------------------------------------------------------------------------------
# Transforms and dataset
# --------------------------------------------------------------------------------------------

def test_transform_shapes_and_normalisation(tmp_path):
    img = Image.new("RGB", (80, 40), (124, 116, 104))  # ~ the ImageNet mean colour
    squash = build_transform(32)(img)
    assert squash.shape == (3, 32, 32) and squash.dtype == torch.float32 and squash.abs().max() < 0.02
    assert build_transform(32, resize="aspect")(img).shape == (3, 16, 32)
    assert build_transform(32, augment=True)(img).shape == (3, 32, 32)
    with pytest.raises(ValueError):
        build_transform(32, resize="crop")


def test_pad_collate_pads_to_the_largest_image():
    a, b = torch.ones(3, 4, 6), torch.ones(3, 5, 2)
    images, labels, idx, ok = pad_collate([(a, 1, 0, True), (b, -1, 1, False)])
    assert images.shape == (2, 3, 5, 6)
    assert images[0, :, 4].abs().sum() == 0 and images[1, :, :, 2:].abs().sum() == 0
    assert images[1, :, :5, :2].eq(1).all()
    assert labels.tolist() == [1, -1] and idx.tolist() == [0, 1] and ok.tolist() == [True, False]


def test_dataset_items_errors_and_skip_bad(tmp_path):
    _jpeg(tmp_path / "good.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"")
    transform = build_transform(16)
    ds = ImageListDataset(str(tmp_path), ["good.jpg", "bad.jpg"], np.array([4, 2]), transform, list_name="x.txt")
    img, label, i, ok = ds[0]
    assert img.shape == (3, 16, 16) and (label, i, ok) == (4, 0, True)
    with pytest.raises(BadInputError, match=r"bad.jpg \(line 2 of x.txt\): image file is empty"):
        ds[1]

    skipping = ImageListDataset(str(tmp_path), ["good.jpg", "bad.jpg"], transform=transform, skip_bad=True)
    img, label, i, ok = skipping[1]
    assert img.shape == (3, 16, 16) and img.abs().sum() == 0 and (label, i, ok) == (-1, 1, False)
    batch = next(iter(torch.utils.data.DataLoader(skipping, batch_size=2)))
    assert batch[3].tolist() == [True, False]

    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[0][0], ds[0][0])


def test_boxes_crop_before_the_transform_and_clamp(tmp_path):
    _jpeg(tmp_path / "q.jpg", size=(64, 48))
    ds = ImageListDataset(str(tmp_path), ["q.jpg", "q.jpg", "q.jpg"],
                          boxes=[[10.2, 5.0, 30.7, 25.0], [-20, -5, 500, 400], None])
    assert ds[0][0].size == (21, 20)
    assert ds[1][0].size == (64, 48)
    assert ds[2][0].size == (64, 48)
