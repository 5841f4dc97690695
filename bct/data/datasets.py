"""A map-style dataset over a list of image paths, used for training and for feature extraction.

Items are ``(image, label, index, ok)``: the transformed image (float tensor (3, H, W) with a
transform, else the RGB PIL image), the int label (-1 when the dataset has no labels), the item's
index in the list (so extraction can put features back in list order whatever the sampler), and
whether the image was decoded.

Bad images (missing, empty, truncated, undecodable): by default ``BadInputError`` naming the file
and its list line. With ``skip_bad=True`` the item comes back with ok=False and an all-zero image
of the transform's nominal output shape (the shape a square image gets); consumers must count the
``ok == False`` items, report the count and leave them out of losses and features (the config keys
TRAIN.SKIP_BAD_IMAGES / EVAL.SKIP_BAD_IMAGES switch this on).
"""
import os

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from bct.data.image import BadImageError, load_rgb
from bct.utils.errors import BadInputError
from bct.utils.logger import get_logger

_LOWERED = set()


def loader_workers(requested: int, key: str) -> int:
    """DataLoader workers to start: ``requested`` (the config value of ``key``), lowered to the CPU
    cores this process may use (``os.sched_getaffinity``), with one info line per setting. More
    workers than cores only compete for them, and torch warns about it on every loader."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if requested <= cores:
        return requested
    if (key, requested, cores) not in _LOWERED:
        _LOWERED.add((key, requested, cores))
        get_logger().info(f"{key} {requested} lowered to {cores}: this process may use {cores} CPU core(s)")
    return cores


def crop_box(img: Image.Image, box) -> Image.Image:
    """Crop ``img`` to box [x1, y1, x2, y2] (pixels, floats allowed), clamped to the image; at least
    one pixel is kept."""
    w, h = img.size
    x1, y1, x2, y2 = (float(v) for v in box)
    left = min(max(int(np.floor(x1)), 0), w - 1)
    top = min(max(int(np.floor(y1)), 0), h - 1)
    right = max(min(int(np.ceil(x2)), w), left + 1)
    bottom = max(min(int(np.ceil(y2)), h), top + 1)
    return img.crop((left, top, right, bottom))


class ImageListDataset(Dataset):
    """Images ``os.path.join(root, paths[i])`` with optional labels (shape (N,)) and optional
    per-item crop boxes (N entries, each [x1, y1, x2, y2] or None).

    ``list_name`` is the list file the paths came from; errors cite "line i+1" of it.
    The object holds only plain lists, arrays and the transform, so it pickles to DataLoader workers.
    """

    def __init__(self, root: str, paths, labels=None, transform=None, boxes=None,
                 skip_bad: bool = False, list_name: str = ""):
        self.root = root
        self.paths = list(paths)
        n = len(self.paths)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        if self.labels is not None and self.labels.shape != (n,):
            raise ValueError(f"labels has shape {self.labels.shape}, expected ({n},)")
        if boxes is not None and len(boxes) != n:
            raise ValueError(f"boxes has {len(boxes)} entries, expected {n}")
        self.boxes = None if boxes is None else list(boxes)
        self.transform = transform
        self.skip_bad = bool(skip_bad)
        self.list_name = list_name or "the image list"
        self._blank = None

    def __len__(self) -> int:
        return len(self.paths)

    def full_path(self, i: int) -> str:
        return os.path.join(self.root, self.paths[i])

    def _placeholder(self):
        if self.transform is None:
            return None
        if self._blank is None:
            self._blank = torch.zeros_like(self.transform(Image.new("RGB", (64, 64))))
        return self._blank.clone()

    def __getitem__(self, i: int):
        label = -1 if self.labels is None else int(self.labels[i])
        try:
            img = load_rgb(self.full_path(i))
        except BadImageError as e:
            if self.skip_bad:
                return self._placeholder(), label, i, False
            raise BadInputError(f"{e.path} (line {i + 1} of {self.list_name}): {e.reason}") from None
        if self.boxes is not None and self.boxes[i] is not None:
            img = crop_box(img, self.boxes[i])
        if self.transform is not None:
            img = self.transform(img)
        return img, label, i, True
