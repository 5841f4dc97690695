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
"""
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESIZE_MODES = ("squash", "aspect")


class ResizeLonger:
    """Resize a PIL image so that its longer side is ``size``, keeping the aspect ratio."""

    def __init__(self, size: int):
        self.size = int(size)

    def __call__(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        scale = self.size / max(w, h)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        return TF.resize(img, [new_h, new_w], interpolation=T.InterpolationMode.BILINEAR, antialias=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


def build_transform(size: int, resize: str = "squash", augment: bool = False) -> T.Compose:
    """PIL RGB image -> normalised float tensor (3, size, size) ("squash") or (3, H, W) with
    max(H, W) = size ("aspect")."""
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    if augment and resize != "squash":
        raise ValueError("augment=True produces square crops; it only combines with resize='squash'")
    if augment:
        geometry = [
            T.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True),
            T.RandomHorizontalFlip(),
            T.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
        ]
    elif resize == "squash":
        geometry = [T.Resize((size, size), antialias=True)]
    else:
        geometry = [ResizeLonger(size)]
    return T.Compose(geometry + [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


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
