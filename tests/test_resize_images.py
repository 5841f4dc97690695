"""bct.tools.resize_images: the resized copy keeps list order, labels and every image mode, copies
small images unchanged, reports unreadable ones by file and line, records a manifest, refuses other
settings, and a run killed part-way is completed by a rerun with every file whole."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from bct.data.datasets import ImageListDataset
from bct.data.image import load_rgb
from bct.data.lists import read_image_list
from bct.data.resize_copy import MANIFEST, is_whole, target_size
from bct.data.transforms import build_transform
from bct.tools.resize_images import main
from bct.utils.errors import BadInputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _texture(w, h, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 9.0 + seed)], -1) * 220
    return np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)


def _source(root):
    """A list over images of every mode and size class; returns (list path, names)."""
    os.makedirs(root / "img", exist_ok=True)
    files = {
        "img/wide.jpg": lambda p: Image.fromarray(_texture(400, 300)).save(p, quality=92),
        "img/tall.jpg": lambda p: Image.fromarray(_texture(150, 360, 1)).save(p, quality=92),
        "img/small.jpg": lambda p: Image.fromarray(_texture(60, 40, 2)).save(p, quality=92),
        "img/grey.jpg": lambda p: Image.fromarray(_texture(300, 200, 3)).convert("L").save(p, quality=92),
        "img/cmyk.jpg": lambda p: Image.fromarray(_texture(300, 200, 4)).convert("CMYK").save(p, quality=92),
        "img/rgba_named.jpg": lambda p: Image.fromarray(_texture(240, 240, 5)).convert("RGBA").save(p, "PNG"),
        "img/deep.png": lambda p: Image.fromarray((_texture(200, 100, 6)[:, :, 0].astype(np.uint16) * 257)).save(p),
        "img/pal_small.png": lambda p: Image.fromarray(_texture(30, 20, 7)).convert("P").save(p),
    }
    lines = []
    for i, (rel, make) in enumerate(files.items()):
        make(str(root / rel))
        lines.append(f"{rel} {7 * i % 5}")
    lst = root / "list.txt"
    lst.write_text("\n".join(lines) + "\n")
    return str(lst), list(files)


def test_copy_keeps_order_labels_and_modes(tmp_path):
    lst, names = _source(tmp_path / "data")
    out = tmp_path / "copy"
    manifest = main(["--list", lst, "--root", str(tmp_path / "data"), "--out", str(out), "--max-side", "100",
                     "--quality", "85", "--workers", "2"])
    assert manifest["images"] == 8 and manifest["resized"] == 6 and manifest["copied"] == 2
    assert manifest["failed"] == 0 and manifest["complete"]
    settings = manifest["settings"]
    assert settings["list_sha256"] == hashlib.sha256(open(lst, "rb").read()).hexdigest()
    assert (settings["mode"], settings["side"], settings["quality"]) == ("max_side", 100, 85)
    assert json.loads((out / MANIFEST).read_text())["bytes"] == manifest["bytes"] > 0

    # The same list reads against the copy: same order, same labels.
    paths, labels = read_image_list(lst, str(out))
    src_paths, src_labels = read_image_list(lst, str(tmp_path / "data"))
    assert paths == src_paths and labels.tolist() == src_labels.tolist()
    for rel in names:
        src, dst = load_rgb(str(tmp_path / "data" / rel)), load_rgb(str(out / rel))
        assert dst.mode == "RGB"
        expected = target_size(*src.size, "max_side", 100) or src.size
        assert dst.size == expected, rel
        small = np.asarray(src.resize(dst.size, Image.BILINEAR), dtype=np.float32)
        assert np.abs(np.asarray(dst, dtype=np.float32) - small).mean() < 8, rel  # the same picture
    assert (out / "img/small.jpg").read_bytes() == (tmp_path / "data/img/small.jpg").read_bytes()
    assert (out / "img/pal_small.png").read_bytes() == (tmp_path / "data/img/pal_small.png").read_bytes()
    ds = ImageListDataset(str(out), paths, labels, build_transform(32, fast=True))
    assert [ds[i][1] for i in range(len(ds))] == labels.tolist()

    # A rerun finds everything there; other settings are refused.
    again = main(["--list", lst, "--root", str(tmp_path / "data"), "--out", str(out), "--max-side", "100",
                  "--quality", "85", "--workers", "1"])
    assert again["present"] == 8 and again["resized"] == again["copied"] == 0
    with pytest.raises(BadInputError, match=r"other settings \(side 100 -> 120\)"):
        main(["--list", lst, "--root", str(tmp_path / "data"), "--out", str(out), "--max-side", "120", "--quality", "85"])
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x\n")
    with pytest.raises(BadInputError, match="non-empty folder without resize_manifest.json"):
        main(["--list", lst, "--root", str(tmp_path / "data"), "--out", str(tmp_path / "busy"), "--max-side", "100"])
    with pytest.raises(BadInputError, match="lies inside the input of --root"):  # a copy inside the image root
        main(["--list", lst, "--root", str(tmp_path / "data"), "--out", str(tmp_path / "data" / "small"),
              "--max-side", "100"])


def test_min_side_and_target_sizes(tmp_path):
    assert target_size(1024, 768, "max_side", 256) == (256, 192)
    assert target_size(1024, 768, "min_side", 224) == (299, 224)
    assert target_size(200, 100, "max_side", 256) is None
    lst, _ = _source(tmp_path / "data")
    main(["--list", lst, "--root", str(tmp_path / "data"), "--out", str(tmp_path / "c"), "--min-side", "90", "--workers", "1"])
    assert Image.open(tmp_path / "c/img/wide.jpg").size == (120, 90)
    assert Image.open(tmp_path / "c/img/tall.jpg").size == (90, 216)


def test_unreadable_images_are_reported_by_file_and_line(tmp_path):
    lst, names = _source(tmp_path / "data")
    data = (tmp_path / "data/img/wide.jpg").read_bytes()
    (tmp_path / "data/img/trunc.jpg").write_bytes(data[: len(data) // 2])
    with open(lst, "a") as f:
        f.write("img/trunc.jpg 1\nimg/missing.jpg 2\n")
    out = tmp_path / "copy"
    with pytest.raises(BadInputError) as e:
        main(["--list", lst, "--root", str(tmp_path / "data"), "--out", str(out), "--max-side", "100", "--workers", "2"])
    msg = str(e.value)
    assert "2 of 10 images could not be read" in msg and "img/trunc.jpg (line 9 of" in msg
    assert "cannot decode the image" in msg and "TRAIN.SKIP_BAD_IMAGES" in msg
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["failed"] == 2 and not manifest["complete"]
    assert [(f["path"], f["line"]) for f in manifest["failures"]] == [("img/trunc.jpg", 9), ("img/missing.jpg", 10)]
    assert "image file not found" in manifest["failures"][1]["reason"]
    assert all((out / n).is_file() for n in names) and not (out / "img/trunc.jpg").exists()


@pytest.mark.slow
def test_kill_and_rerun_completes_with_every_file_whole(tmp_path):
    n = 40
    (tmp_path / "data" / "src").mkdir(parents=True)
    for i in range(n):
        Image.fromarray(_texture(480, 360, i)).save(tmp_path / f"data/src/{i}.jpg", quality=90)
    lst = tmp_path / "list.txt"
    lst.write_text("".join(f"src/{i}.jpg {i % 3}\n" for i in range(n)))
    out = tmp_path / "copy"
    cmd = [sys.executable, "-m", "bct.tools.resize_images", "--list", str(lst), "--root", str(tmp_path / "data"),
           "--out", str(out), "--max-side", "64", "--workers", "2"]
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")

    def outputs():
        folder = out / "src"
        return [f for f in os.listdir(folder) if not f.startswith(".")] if folder.is_dir() else []

    # The tool and its worker processes form one process group: kill all of it, as a scheduler would.
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(outputs()) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.2)  # let the killed workers' exits settle
    done_before = len(outputs())
    assert proc.returncode == -signal.SIGKILL and done_before < n
    for name in outputs():  # whatever sits under a final name is whole
        assert load_rgb(str(out / "src" / name)).size == (64, 48)
    assert not json.loads((out / MANIFEST).read_text())["complete"]
    (out / "src" / ".7.jpg.k2j4x9.tmp").write_bytes(b"\xff\xd8 half a file")  # as a kill mid-write leaves

    res = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["complete"] and manifest["images"] == n
    assert manifest["present"] >= done_before and manifest["present"] + manifest["resized"] == n
    assert manifest["stale_temporaries_removed"] >= 1
    assert sorted(os.listdir(out / "src")) == sorted(f"{i}.jpg" for i in range(n))  # no temporary left
    for i in range(n):
        assert load_rgb(str(out / f"src/{i}.jpg")).size == (64, 48)
        assert is_whole(str(out / f"src/{i}.jpg"), str(tmp_path / f"data/src/{i}.jpg"))
