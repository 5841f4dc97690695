"""Helpers shared by the tests (import them with `from helpers import ...`): a tiny fabricated
image-list dataset (class-dependent patterns, 32 px) and the KEY VALUE overrides of a seconds-long
CPU training run on it."""
import os

import numpy as np
from PIL import Image


def make_image_list(root, n_classes=4, per_class=6, size=32, seed=0, name="train.txt", first_label=0):
    """Write per-class patterned JPEGs under root/img and a 'path label' list; returns the list path."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "img"), exist_ok=True)
    lines = []
    yy, xx = np.mgrid[0:size, 0:size]
    for c in range(n_classes):
        freq = 1 + c
        for j in range(per_class):
            base = (np.sin(xx * freq / 4.0 + j * 0.3) * np.cos(yy * (c % 3 + 1) / 5.0) + 1) * 120
            img = np.stack([base, np.roll(base, c * 3, axis=0), base[::-1]], -1)
            img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
            rel = f"img/c{c + first_label}_{j}.jpg"
            Image.fromarray(img).save(os.path.join(root, rel), quality=92)
            lines.append(f"{rel} {c + first_label}")
    path = os.path.join(root, name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def train_opts(root, list_path, out, num_classes, role="old", **extra):
    """KEY VALUE overrides for a seconds-long CPU training run on a tiny list."""
    key = "OLD_MODEL" if role == "old" else "NEW_MODEL"
    opts = {
        "TRAIN.ROOT": str(root), "TRAIN.LIST_FILE": str(list_path), f"{key}.NUM_CLASSES": str(num_classes),
        f"{key}.PRETRAINED": "False", "TRAIN.BATCH_SIZE": "8", "TRAIN.EPOCHS": "2", "TRAIN.INPUT_SIZE": "32",
        "TRAIN.NUM_WORKERS": "0", "OUTPUT": str(out), "TAG": "t", "PRINT_FREQ": "100", "DEVICE": "cpu",
        "TRAIN.OPTIMIZER.BASE_LR": "0.01", "TRAIN.VAL_FREQ": "0",
    }
    opts.update({k: str(v) for k, v in extra.items()})
    return [x for kv in opts.items() for x in kv]


def save_index_model(path, seed, old="", old_digest="", emb_dim=64, arch="mobilenet_v3_small", size=32):
    """A randomly initialised checkpoint; with `old`, a compatible model trained against that file."""
    import torch

    from bct.engine.checkpoint import save_checkpoint
    from bct.models.build import build_model_from_meta

    torch.manual_seed(seed)
    meta = {"arch": arch, "emb_dim": emb_dim, "num_classes": 3, "role": "new" if old or old_digest else "old",
            "loss_type": "softmax", "old_model_path": old, "train_type": "compatible" if old or old_digest else "base"}
    if old_digest:
        meta["old_model_digest"] = old_digest
    model = build_model_from_meta(meta)
    save_checkpoint(str(path), {"model": model.state_dict(), "meta": meta, "epoch": 0,
                                "config": f"EVAL:\n  INPUT_SIZE: {size}\n  RESIZE: squash\n"})
    return str(path)


def index_world(root, n_classes=3, per_class=6, size=32, models="ABCDE"):
    """A gallery image list under `root` and checkpoints A (old) -> B -> C, D (unrelated), E (32
    dimensions, trained against A), the first `models` of them; feats: A's and B's gallery vectors."""
    from bct.engine.checkpoint import load_model
    from bct.index.embed import embed_images

    lst = make_image_list(str(root), n_classes=n_classes, per_class=per_class, size=size)
    m = os.path.join(str(root), "models")
    os.makedirs(m, exist_ok=True)
    world = {"root": str(root), "list": lst}
    specs = {"A": (0, "", 64), "B": (1, "A", 64), "C": (2, "B", 64), "D": (3, "", 64), "E": (4, "A", 32)}
    for name in models:
        seed, old, dim = specs[name]
        world[name] = save_index_model(os.path.join(m, f"{name}.pth"), seed, old=world.get(old, ""), emb_dim=dim,
                                       size=size)
    world["paths"] = [line.split()[0] for line in open(lst)]
    world["feats"] = {k: embed_images(load_model(world[k]), world["paths"], str(root), batch_size=2)
                      for k in "AB"}
    return world
