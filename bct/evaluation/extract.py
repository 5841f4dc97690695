"""Feature extraction: the only part of evaluation that runs a model (docs/evaluation.md).

Batched, eval mode, no grad, AMP on CUDA, a progress bar. Under torchrun every rank embeds a
slice of each global batch and the slices are all-gathered, so every rank ends with the features
in dataset order while memory stays bounded by the batch. With `out_path` the features stream
into a .npy file (memory-mapped) instead of RAM: a 762k-image gallery needs no more memory than a
batch. Gallery features can be cached on disk, keyed by the checkpoint's content, the image list
and each image file's size and modification time, so a cross-test reuses the old gallery instead of
re-extracting it while a repaired or replaced image gets fresh features. A cache entry that cannot
be read back whole (truncated, wrong shape) is extracted again, with one info line.
``embed_images`` is what the benchmark sets call: image paths in, features out, through the cache.
"""
import hashlib
import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from bct.data.datasets import build_image_dataset, loader_workers
from bct.data.gpu_decode import raw_collate
from bct.utils.errors import BadInputError
from bct.utils.comm import all_gather_nograd, get_rank, get_world_size, is_main_process, barrier
from bct.utils.fileio import atomic_path, file_signature, reserve
from bct.utils.logger import get_logger


def _collate(batch):
    images, _, index, ok = zip(*batch)
    return torch.stack(images), torch.tensor(index), torch.tensor(ok)


@torch.no_grad()
def extract_features(model, dataset, batch_size: int = 64, num_workers: int = 2, device="cpu",
                     amp: bool = True, desc: str = "extract", out_path: str = "", collate_fn=None,
                     batch_decoder=None):
    """Embed every item of `dataset` (which yields (image, label, index, ok)).

    With `batch_decoder` (GPU decoding, bct.data.datasets.build_image_dataset) the loader delivers
    undecoded batches that it turns into images on `device`.

    Returns (features (N, D) float32 L2-normalised, ok (N,) bool). Items that failed to load
    under skip_bad have ok False and a zero feature. With out_path, features are written to that
    .npy file (atomically) and the returned array is a read-only memmap of it.
    """
    device = torch.device(device)
    rank, world = get_rank(), get_world_size()
    n = len(dataset)
    step = batch_size * world
    n_batches = (n + step - 1) // step
    my_batches = []
    for b in range(n_batches):
        start = b * step + rank * batch_size
        my_batches.append(list(range(start, min(start + batch_size, n))) if start < n else [])
    if batch_decoder is not None:
        collate_fn = raw_collate
    loader = DataLoader(dataset, batch_sampler=[ix for ix in my_batches if ix], num_workers=num_workers,
                        pin_memory=device.type == "cuda", collate_fn=collate_fn or _collate)
    it = iter(loader)
    was_training = model.training
    model.eval()
    use_amp = amp and device.type == "cuda"
    feats = ok = None
    writer = None
    bar = None
    if is_main_process():
        from tqdm import tqdm
        bar = tqdm(total=n, desc=desc, leave=False, disable=None, dynamic_ncols=True)
    try:
        for b in range(n_batches):
            if my_batches[b]:
                if batch_decoder is None:
                    images, index, good = next(it)
                else:
                    payloads, _, index, _ = next(it)
                    images, good = batch_decoder(payloads, index)
                images = images.to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                    emb = model(images)
                emb = F.normalize(emb.float(), dim=1)
                emb = emb * good.to(device)[:, None].float()
            else:
                emb = torch.zeros(0, model.meta["emb_dim"] if hasattr(model, "meta") else 0, device=device)
                good = torch.zeros(0, dtype=torch.bool)
            emb_all = all_gather_nograd(emb).cpu().numpy()
            ok_all = all_gather_nograd(good.to(device)).cpu().numpy().astype(bool)
            if feats is None:
                dim = emb_all.shape[1]
                if out_path and is_main_process():
                    writer = atomic_path(out_path)
                    tmp = writer.__enter__()
                    feats = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
                    reserve(tmp, out_path)
                else:
                    feats = np.zeros((n, dim), dtype=np.float32)
                ok = np.zeros(n, dtype=bool)
            lo = b * step
            feats[lo:lo + emb_all.shape[0]] = emb_all
            ok[lo:lo + ok_all.shape[0]] = ok_all
            if bar is not None:
                bar.update(emb_all.shape[0])
    except BaseException:
        if writer is not None:
            _abandon(writer)
        raise
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    if writer is not None:
        feats.flush()
        del feats
        writer.__exit__(None, None, None)
        feats = np.load(out_path, mmap_mode="r")
    return feats, ok


def _abandon(writer):
    """Leave no half-written file: close the atomic writer so that it removes its temporary file."""
    try:
        writer.__exit__(RuntimeError, RuntimeError("extraction interrupted"), None)
    except RuntimeError:
        pass


def cache_key(model_digest: str, items, settings: dict) -> str:
    """Key of a feature cache entry: checkpoint content + image list (each item a path or a
    (path, box) pair) + each image file's size and modification time + transform settings."""
    h = hashlib.sha256()
    h.update(model_digest.encode())
    h.update(json.dumps(settings, sort_keys=True).encode())
    for item in items:
        path = item[0] if isinstance(item, tuple) else item
        h.update(repr((item, file_signature(path))).encode())
        h.update(b"\n")
    return h.hexdigest()[:32]


def _load_cached(feat_path: str, ok_path: str, n: int):
    """The cached (features, ok mask) of n items, or None (with an info line) when the entry is
    damaged: truncated, unreadable, or of the wrong shape or type."""
    try:
        feats = np.load(feat_path, mmap_mode="r")
        ok = np.load(ok_path)
        if feats.ndim != 2 or feats.shape[0] != n or feats.dtype != np.float32:
            raise ValueError(f"features of shape {feats.shape} and type {feats.dtype}, expected ({n}, D) float32")
        if ok.shape != (n,) or ok.dtype != bool:
            raise ValueError(f"mask of shape {ok.shape} and type {ok.dtype}, expected ({n},) bool")
    except (OSError, ValueError, EOFError) as e:
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        get_logger().info(f"cache entry {feat_path} is damaged ({reason}); extracting the features again")
        return None
    return feats, ok


def cached_extract(model, dataset, key: str, cache_dir: str, use_cache: bool, **kwargs):
    """extract_features through an on-disk cache (features + ok mask; written atomically by rank 0)."""
    if not use_cache or not key:
        return extract_features(model, dataset, **kwargs)
    feat_path = os.path.join(cache_dir, f"{key}.npy")
    ok_path = os.path.join(cache_dir, f"{key}.ok.npy")
    if os.path.isfile(feat_path) and os.path.isfile(ok_path):
        cached = _load_cached(feat_path, ok_path, len(dataset))
        if cached is not None:
            get_logger().info(f"reusing cached features {feat_path}")
            return cached
    barrier()
    feats, ok = extract_features(model, dataset, out_path=feat_path if is_main_process() else "", **kwargs)
    if not ok.any():
        # Nothing was read: an all-zero entry is no result to keep (the caller refuses it). The
        # memory map stays readable after the file is removed.
        barrier()
        if is_main_process():
            os.remove(feat_path)
        return feats, ok
    if is_main_process():
        with atomic_path(ok_path) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, ok)
    barrier()
    return feats, ok


def feature_settings(cfg, role: str) -> dict:
    """The preprocessing that shapes a feature, as it enters the cache key of ``role`` ("query" or
    "gallery") images."""
    settings = {"size": cfg.EVAL.INPUT_SIZE, "resize": cfg.EVAL.RESIZE, "role": role,
                "crop": cfg.EVAL.QUERY_CROP if role == "query" else False}
    # Features of another decoding differ slightly: they get their own cache entries. The default
    # settings add nothing, so the keys of existing caches stay valid.
    if cfg.DATA.EVAL_FAST_DECODE or cfg.DATA.EVAL_DECODE_DEVICE != "cpu":
        settings["decode"] = [bool(cfg.DATA.EVAL_FAST_DECODE), cfg.DATA.EVAL_DECODE_DEVICE]
    return settings


def embed_images(cfg, model, paths, role: str, device, digest: str = "", boxes=None, list_name: str = ""):
    """Features (N, D) float32 of absolute image ``paths`` and the number of unreadable images.

    ``boxes``: one [x1, y1, x2, y2] crop per image, or None. Gallery features go through the
    on-disk cache (EVAL.CACHE_DIR) when EVAL.USE_CACHE is on and the model's checkpoint ``digest``
    is known. Under EVAL.SKIP_BAD_IMAGES an unreadable image gets a zero feature and a warning; when
    none can be read, BadInputError (``list_name`` names the list in both).
    """
    dataset, decoder = build_image_dataset(cfg, "eval", "", paths, size=cfg.EVAL.INPUT_SIZE, resize=cfg.EVAL.RESIZE,
                                           boxes=boxes, skip_bad=cfg.EVAL.SKIP_BAD_IMAGES, list_name=list_name,
                                           device=device)
    # Aspect-preserving images differ in size: one per batch, so no padding enters the pooling.
    batch = 1 if cfg.EVAL.RESIZE == "aspect" else cfg.EVAL.BATCH_SIZE
    workers = loader_workers(cfg.EVAL.NUM_WORKERS, "EVAL.NUM_WORKERS")
    kwargs = dict(batch_size=batch, num_workers=workers, device=device,
                  amp=cfg.USE_AMP, desc=f"{role} features", batch_decoder=decoder)
    use_cache = bool(cfg.EVAL.USE_CACHE and digest and role == "gallery")
    key = cache_key(digest, zip(paths, boxes or [None] * len(paths)), feature_settings(cfg, role)) if use_cache else ""
    feats, ok = cached_extract(model, dataset, key, cfg.EVAL.CACHE_DIR, use_cache, **kwargs)
    bad = int((~ok).sum())
    if bad == len(paths):
        raise BadInputError(f"{list_name}: none of the {len(paths)} {role} images could be read "
                            f"(EVAL.SKIP_BAD_IMAGES): there is nothing to score; no result written")
    if bad:
        get_logger().warning(f"{list_name}: {bad} of {len(paths)} {role} images could not be read and were "
                             f"given a zero feature (EVAL.SKIP_BAD_IMAGES)")
    return np.ascontiguousarray(feats, dtype=np.float32), bad
