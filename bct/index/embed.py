"""Galleries and queries as image lists, and the one embedding loop of build, backfill and query
(docs/deploying.md).

A gallery is an image list (`relative/path label` lines, bct.data.lists) with the folder its paths
are relative to, or a folder of images (every image file below it, in sorted order, ids relative to
it). Row i of an index is line i of the list. Images are preprocessed as the model's checkpoint says
(bct.load_model: input size, resize mode, ImageNet normalisation), exactly as the evaluation does.
"""
import os

import numpy as np

from bct.data.lists import read_image_list
from bct.utils.errors import BadInputError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def read_gallery(list_path: str = "", root: str = "", folder: str = ""):
    """(ids, labels or None, source dict) of a gallery given as a list (+ root) or as a folder."""
    if bool(list_path) == bool(folder):
        raise BadInputError("gallery: give either an image list (--list FILE, with --root DIR) or --folder DIR")
    if list_path:
        root = root or os.path.dirname(os.path.abspath(list_path))
        ids, labels = read_image_list(list_path, root)
        return list(ids), np.asarray(labels, dtype=np.int64), {"kind": "list", "list": os.path.abspath(list_path),
                                                               "root": os.path.abspath(root)}
    return folder_images(folder), None, {"kind": "folder", "root": os.path.abspath(folder)}


def folder_images(folder: str) -> list:
    """Paths (relative, '/'-separated, sorted) of the image files under `folder`."""
    if not os.path.isdir(folder):
        raise BadInputError(f"image folder {folder} is not a folder")
    out = []
    for d, subdirs, files in os.walk(folder):
        subdirs.sort()
        for name in files:
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                rel = os.path.relpath(os.path.join(d, name), folder).replace(os.sep, "/")
                if "\n" in rel or "\r" in rel:
                    raise BadInputError(f"{folder}: file name {rel!r} holds a line break; rename it")
                out.append(rel)
    if not out:
        raise BadInputError(f"image folder {folder} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    return sorted(out)


def image_dataset(root: str, paths, model, skip_bad: bool = False, list_name: str = ""):
    """The ImageListDataset of `paths` (relative to `root`, or absolute with root "") preprocessed
    as `model` expects (its transform, from bct.load_model)."""
    from bct.data.datasets import ImageListDataset

    if getattr(model, "transform", None) is None:
        raise BadInputError("the model carries no preprocessing: load it with bct.load_model, or give its checkpoint "
                            "path")
    return ImageListDataset(root, paths, transform=model.transform, skip_bad=skip_bad, list_name=list_name)


def _collate(batch):
    import torch

    images, _, index, ok = zip(*batch)
    return torch.stack(images), torch.tensor(index), torch.tensor(ok)


def embed_batches(model, dataset, batches, device="cpu", workers: int = 2, amp: bool = True):
    """Yield (indices (b,) int64, features (b, D) float32 L2-normalised, ok (b,) bool) for each list
    of dataset indices in `batches`, in that order. Unreadable images (dataset skip_bad) get ok
    False and a zero feature, as in bct.evaluation.extract."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from bct.data.datasets import loader_workers

    device = torch.device(device)
    batches = [list(b) for b in batches if len(b)]
    if not batches:
        return
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=loader_workers(workers, "--workers"),
                        pin_memory=device.type == "cuda", collate_fn=_collate)
    use_amp = amp and device.type == "cuda"
    model.eval()
    with torch.no_grad():
        for images, index, good in loader:
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                emb = model(images.to(device, non_blocking=True))
            emb = F.normalize(emb.float(), dim=1) * good.to(device)[:, None].float()
            yield index.numpy().astype(np.int64), emb.cpu().numpy(), good.numpy().astype(bool)


def embed_images(model, paths, root: str = "", batch_size: int = 64, workers: int = 0, device="cpu",
                 amp: bool = True, list_name: str = "queries") -> np.ndarray:
    """(n, D) float32 L2-normalised features of image files (the query side of a search)."""
    dataset = image_dataset(root, list(paths), model, list_name=list_name)
    n = len(dataset)
    batch = 1 if getattr(model, "resize", "squash") == "aspect" else batch_size
    out = np.zeros((n, model.meta["emb_dim"]), dtype=np.float32)
    for index, feats, _ in embed_batches(model, dataset, [range(s, min(s + batch, n)) for s in range(0, n, batch)],
                                         device, workers, amp):
        out[index] = feats
    return out
