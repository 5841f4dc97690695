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

A transform with a ``min_decoded_size`` method (``TensorTransform``, the fast path) makes JPEGs
decode at reduced size (bct/data/image.py); items with a crop box are always decoded in full,
because the box is in stored pixels. With ``gpu_decode=True`` (and a ``TensorTransform``) the
worker leaves decoding to ``bct.data.gpu_decode.BatchDecoder``: the item's image is a pair
(tensor, note), the file's bytes as uint8 (N,) with note "", or, for a file the GPU decoder may not
handle, the worker's own decode as uint8 (3, H, W) (cropped, not transformed) with the reason in
note. An unreadable file under skip_bad gives an empty tensor.
"""
import os

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from bct.data.gpu_decode import BatchDecoder, gpu_decoding_available, gpu_unsupported_reason
from bct.data.image import BadImageError, box_pixels, decode_rgb, read_image_bytes
from bct.data.transforms import build_transform, pil_to_uint8
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
    return img.crop(box_pixels(*img.size, box))


class ImageListDataset(Dataset):
    """Images ``os.path.join(root, paths[i])`` with optional labels (shape (N,)) and optional
    per-item crop boxes (N entries, each [x1, y1, x2, y2] or None).

    ``list_name`` is the list file the paths came from; errors cite "line i+1" of it.
    The object holds only plain lists, arrays and the transform, so it pickles to DataLoader workers.
    """

    def __init__(self, root: str, paths, labels=None, transform=None, boxes=None,
                 skip_bad: bool = False, list_name: str = "", gpu_decode: bool = False):
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
        self.gpu_decode = bool(gpu_decode)
        if self.gpu_decode and not hasattr(transform, "geometry"):
            raise ValueError("gpu_decode=True needs the TensorTransform (build_transform(..., fast=True))")
        self._blank = None

    def __len__(self) -> int:
        return len(self.paths)

    def full_path(self, i: int) -> str:
        return os.path.join(self.root, self.paths[i])

    def bad_image_error(self, err: BadImageError, i: int) -> BadInputError:
        """The error of item i: the file, its line in the list, the reason."""
        return BadInputError(f"{err.path} (line {i + 1} of {self.list_name}): {err.reason}")

    def decode(self, data: bytes, i: int) -> Image.Image:
        """Item i's RGB image from its file bytes, cropped to its box (BadImageError if the bytes do
        not decode)."""
        box = self.boxes[i] if self.boxes is not None else None
        hint = getattr(self.transform, "min_decoded_size", None) if box is None else None
        img = decode_rgb(data, self.full_path(i), hint)
        return img if box is None else crop_box(img, box)

    def _gpu_payload(self, data: bytes, i: int):
        reason = gpu_unsupported_reason(data)
        if not reason:
            return torch.frombuffer(bytearray(data), dtype=torch.uint8), ""
        return pil_to_uint8(self.decode(data, i)), reason

    def _placeholder(self):
        if self.gpu_decode:
            return torch.zeros(0, dtype=torch.uint8), ""
        if self.transform is None:
            return None
        if self._blank is None:
            self._blank = torch.zeros_like(self.transform(Image.new("RGB", (64, 64))))
        return self._blank.clone()

    def __getitem__(self, i: int):
        label = -1 if self.labels is None else int(self.labels[i])
        try:
            data = read_image_bytes(self.full_path(i))
            if self.gpu_decode:
                return self._gpu_payload(data, i), label, i, True
            img = self.decode(data, i)
        except BadImageError as e:
            if self.skip_bad:
                return self._placeholder(), label, i, False
            raise self.bad_image_error(e, i) from None
        if self.transform is not None:
            img = self.transform(img)
        return img, label, i, True


STAGE_KEYS = {"train": ("FAST_DECODE", "DECODE_DEVICE"), "eval": ("EVAL_FAST_DECODE", "EVAL_DECODE_DEVICE")}


def build_image_dataset(cfg, stage: str, root: str, paths, labels=None, *, size: int, resize: str = "squash",
                        augment: bool = False, boxes=None, skip_bad: bool = False, list_name: str = "",
                        device="cpu"):
    """The ``ImageListDataset`` of a pipeline stage and its GPU batch decoder.

    stage "train" reads DATA.FAST_DECODE and DATA.DECODE_DEVICE, stage "eval" (evaluation and
    extract_feat) DATA.EVAL_FAST_DECODE and DATA.EVAL_DECODE_DEVICE. Returns (dataset, decoder):
    decoder is None when images are decoded in the loader workers, else a
    ``bct.data.gpu_decode.BatchDecoder`` that turns the batches of ``raw_collate`` into images on
    ``device``. Decoding on "cuda" where no GPU decoder works logs why and decodes on the CPU.
    """
    fast_key, device_key = STAGE_KEYS[stage]
    on_gpu = cfg.DATA[device_key] == "cuda"
    if on_gpu:
        reason = gpu_decoding_available(device)
        if reason:
            get_logger().warning(f"DATA.{device_key} cuda: {reason}; images are decoded on the CPU in the loader "
                                 f"workers instead")
            on_gpu = False
    transform = build_transform(size, resize, augment, fast=bool(cfg.DATA[fast_key]) or on_gpu)
    dataset = ImageListDataset(root, paths, labels, transform, boxes=boxes, skip_bad=skip_bad,
                               list_name=list_name, gpu_decode=on_gpu)
    return dataset, BatchDecoder(dataset, device) if on_gpu else None
