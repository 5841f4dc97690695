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


def catalogue_terms() -> list:
    """The compatibility terms that the methods of the catalogue train with (COMP_LOSS.TYPE and
    EXTRA_TERMS of every method yml, BCT_METHODS_PATH included; their MODULES imported), sorted. Tests
    parametrised over it cover a method added to the catalogue with no change (mark them catalogue)."""
    from bct.config import load_layers
    from bct.config.methods import method_file, method_names
    from bct.losses import term_names

    terms = set()
    for name in method_names():
        cfg = load_layers([method_file(name)], freeze=False, notes=[], sets={"METHOD.NAME": name})
        terms.update(term_names(cfg))
    return sorted(terms)
