"""Image transforms for training and evaluation (docs/method.md input, docs/evaluation.md test-time preprocessing).

- "squash" (the paper's, training and default evaluation): resize to size x size ignoring the
  aspect ratio.
- "aspect" (revisited protocol option): the longer side becomes ``size``, the aspect ratio is
  kept. Images of one batch then differ in shape: evaluate with batch size 1, or use
  ``pad_collate``, which zero-pads (in normalised space, i.e. with the ImageNet mean colour) to the
  largest height and width of the batch. Padding adds border pixels that pooling sees, so features
  of a padded batch differ slightly from batch-size-1 features.
- augment=True (training option, off by default as in the paper): RandomResizedCrop(size,
  scale=(0.6, 1)) + horizontal flip + mild colour jitter, in place of the squash resize.

Every transform ends with ToTensor + ImageNet mean/std normalisation and yields a float tensor of
shape (3, H, W).

Two implementations of the same geometry and normalisation:

- ``fast=False`` (the reference's, and the evaluation default): torchvision transforms on PIL
  images; bit-for-bit the path the paper's numbers used.
- ``fast=True`` (``TensorTransform``, the training default): the same operations on uint8
  tensors (antialiased bilinear resize, torchvision.transforms.v2 for the augmentations), which
  is faster on the CPU and runs on CUDA tensors unchanged (GPU decoding, bct/data/gpu_decode.py).
  It also tells the decoder how small a JPEG may be decoded (``min_decoded_size``). Pixels differ
  from the PIL path by the resize filter's rounding (a few grey levels), and the random draws
  of the augmentations follow the same distributions.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_MODES = ("squash", "aspect")
# RandomResizedCrop of the augment option: area fraction and aspect-ratio range of the crop.
CROP_SCALE = (0.6, 1.0)
CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)
JITTER = dict(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02)


def longer_side_size(width: int, height: int, size: int):
    """(height, width) of an image of ``width`` x ``height`` whose longer side is scaled to ``size``."""
    scale = size / max(width, height)
    return max(1, round(height * scale)), max(1, round(width * scale))


class ResizeLonger:
    """Resize a PIL image so that its longer side is ``size``, keeping the aspect ratio."""

    def __init__(self, size: int):
        self.size = int(size)

    def __call__(self, img: Image.Image) -> Image.Image:
        return TF.resize(img, list(longer_side_size(*img.size, self.size)),
                         interpolation=T.InterpolationMode.BILINEAR, antialias=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


def pil_to_uint8(img: Image.Image) -> torch.Tensor:
    """uint8 (3, H, W) of an RGB PIL image: a view of an HWC copy, the channels-last layout that the
    uint8 resize kernel of the CPU is fastest on."""
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)


class TensorTransform:
    """The fast implementation of ``build_transform``: the same geometry and normalisation on uint8
    tensors.

    Input: an RGB PIL image or a uint8 tensor (3, H, W) on any device. Output: a float32 tensor
    (3, size, size) ("squash", augment) or (3, H', W') with max(H', W') = size ("aspect"), on the
    input's device. Holds no tensors, so it pickles to DataLoader workers.
    """

    def __init__(self, size: int, resize: str = "squash", augment: bool = False):
        self.size, self.resize, self.augment = int(size), resize, bool(augment)
        self.random = None
        if augment:
            self.random = v2.Compose([
                v2.RandomResizedCrop(self.size, scale=CROP_SCALE, ratio=CROP_RATIO, antialias=True),
                v2.RandomHorizontalFlip(),
                v2.ColorJitter(**JITTER),
            ])

    def min_decoded_size(self, width: int, height: int):
        """(width, height): the fewest pixels per side an image of ``width`` x ``height`` may be
        decoded to without the output losing detail (load_rgb's JPEG fast path)."""
        if self.augment:
            # The smallest random crop has sides sqrt(area * ratio) of at least
            # sqrt(scale_min * ratio_min * W * H); this side keeps every crop at >= size pixels.
            side = math.ceil(self.size / math.sqrt(CROP_SCALE[0] * CROP_RATIO[0]))
            return side, side
        if self.resize == "squash":
            return self.size, self.size
        scale = self.size / max(width, height)
        return math.ceil(width * scale), math.ceil(height * scale)

    def geometry(self, img: torch.Tensor) -> torch.Tensor:
        """uint8 (3, H, W) -> uint8 (3, H', W'): the resize, or the random crop, flip and jitter."""
        if self.augment:
            return self.random(img)
        target = [self.size, self.size] if self.resize == "squash" else \
            list(longer_side_size(img.shape[2], img.shape[1], self.size))
        return img if list(img.shape[1:]) == target else v2.functional.resize(img, target, antialias=True)

    @staticmethod
    def normalise(img: torch.Tensor) -> torch.Tensor:
        """uint8 (..., 3, H, W) -> float32 of the same shape: /255, ImageNet mean and std."""
        # (x / 255 - mean) / std as one multiply and one add; contiguous while still uint8, because
        # float ops on the channels-last view cost five times more.
        scale = torch.tensor([1.0 / (255.0 * s) for s in IMAGENET_STD], device=img.device).view(3, 1, 1)
        shift = torch.tensor([-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)], device=img.device).view(3, 1, 1)
        return img.contiguous().float().mul_(scale).add_(shift)

    def __call__(self, img) -> torch.Tensor:
        if isinstance(img, Image.Image):
            img = pil_to_uint8(img)
        return self.normalise(self.geometry(img))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, resize={self.resize!r}, augment={self.augment})"


def build_transform(size: int, resize: str = "squash", augment: bool = False, fast: bool = False):
    """PIL RGB image -> normalised float tensor (3, size, size) ("squash") or (3, H, W) with
    max(H, W) = size ("aspect"). fast=True returns the ``TensorTransform`` of the same settings."""
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    if augment and resize != "squash":
        raise ValueError("augment=True produces square crops; it only combines with resize='squash'")
    if fast:
        return TensorTransform(size, resize, augment)
    if augment:
        geometry = [
            T.RandomResizedCrop(size, scale=CROP_SCALE, ratio=CROP_RATIO, antialias=True),
            T.RandomHorizontalFlip(),
            T.ColorJitter(**JITTER),
        ]
    elif resize == "squash":
        geometry = [T.Resize((size, size), antialias=True)]
    else:
        geometry = [ResizeLonger(size)]
    return T.Compose(geometry + [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


class ToRGB:
    """A PIL image of any mode (L, LA, P, RGBA, CMYK, I;16, 1, ...) or an HWC uint8 numpy array ((H, W),
    (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA) -> an RGB PIL image, converted as the tools convert a
    decoded file (bct.data.image.to_rgb: alpha on white, 16-bit and float scaled to 8 bits)."""

    def __call__(self, img):
        from bct.data.image import to_rgb

        if isinstance(img, np.ndarray):
            if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3, 4)):
                raise ValueError(f"an image array must be HWC uint8 with 1, 3 or 4 channels (or HW), got "
                                 f"{img.dtype} of shape {img.shape}")
            arr = img[:, :, 0] if img.ndim == 3 and img.shape[2] == 1 else img
            img = Image.fromarray(np.ascontiguousarray(arr))  # L, RGB or RGBA from the array's shape
        elif not isinstance(img, Image.Image):
            raise TypeError(f"expected a PIL image or an HWC uint8 numpy array, got {type(img).__name__}")
        return to_rgb(img)


def model_transform(size: int, resize: str = "squash", mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """What a loaded model's ``transform`` does (bct.models.loading.load_model): any image (ToRGB) ->
    build_transform's tensor, normalised with the model's mean and std."""
    steps = build_transform(size, resize).transforms
    if (tuple(mean), tuple(std)) != (tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)):
        steps = steps[:-1] + [T.Normalize(mean, std)]
    return T.Compose([ToRGB()] + steps)


def pad_collate(batch):
    """Collate ``ImageListDataset`` items whose images differ in size.

    batch: list of (image (3, H_i, W_i), label, index, ok). Returns (images (B, 3, H, W) with
    H = max H_i and W = max W_i, each image at the top-left and zeros elsewhere; labels int64 (B,);
    indices int64 (B,); ok bool (B,)).
    """
    images, labels, indices, oks = zip(*batch)
    height = max(img.shape[1] for img in images)
    width = max(img.shape[2] for img in images)
    padded = torch.stack([F.pad(img, (0, width - img.shape[2], 0, height - img.shape[1])) for img in images])
    return (padded, torch.tensor(labels, dtype=torch.int64), torch.tensor(indices, dtype=torch.int64),
            torch.tensor(oks, dtype=torch.bool))
