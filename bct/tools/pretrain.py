"""Make a shared pretrained start: train a classification model on a pretraining list and publish
its backbone as a weight file that `*.PRETRAINED_PATH` loads exactly like ImageNet weights.

python -m bct.tools.pretrain --cfg configs/synthetic/pretrain.yml --out FILE [KEY VALUE ...]

This is the synthetic benchmark's counterpart of ImageNet pretraining: the old model, the oracle and
every new model start from the same backbone, as the paper's models all start from ImageNet. The run
is cached under a key of its training settings and of the pretraining list's content: when FILE
already holds the weights of the same key nothing is trained; an interrupted run resumes from its
folder OUTPUT/<arch>/pretrain_<key>/. FILE gets a JSON sidecar (FILE.json) naming the key and the
settings.
"""
import argparse
import hashlib
import json
import os
import time

from bct.config import cfg_to_yaml, load_cfg, training_settings
from bct.tools.common import run
from bct.utils.errors import BadInputError
from bct.utils.fileio import file_digest, write_json_atomic


def pretrain_key(cfg) -> str:
    """Short hash of everything that decides the pretrained weights."""
    h = hashlib.sha256(training_settings(cfg, drop_tag=True).encode())
    h.update(file_digest(cfg.TRAIN.FILE_DIR).encode())
    return h.hexdigest()[:12]


def published_key(out: str) -> str:
    """The key recorded beside a published weight file ('' when absent or unreadable)."""
    try:
        with open(out + ".json") as f:
            return json.load(f).get("key", "")
    except (OSError, ValueError, AttributeError):
        return ""


def ensure_pretrained(cfg_path: str, out: str, opts=(), log=print) -> str:
    """Train (or reuse, or resume) the pretraining run of `cfg_path` and publish its backbone at
    `out`; returns `out`."""
    import torch

    from bct.engine.checkpoint import atomic_path, load_checkpoint
    from bct.engine.trainer import LAST_POINTER, output_dir
    from bct.tools import train

    cfg = load_cfg(cfg_path, list(opts))
    if cfg.TRAIN.TYPE != "base":
        raise BadInputError(f"{cfg_path}: a pretraining run needs TRAIN.TYPE base, not {cfg.TRAIN.TYPE!r}")
    if not os.path.isfile(cfg.TRAIN.FILE_DIR):
        raise BadInputError(f"{cfg_path}: pretraining list {cfg.TRAIN.FILE_DIR} does not exist; make the synthetic "
                            "benchmark first (python -m bct.tools.make_synthetic --out data/synthetic)")
    key = pretrain_key(cfg)
    if os.path.isfile(out) and published_key(out) == key:
        log(f"[pretrain] reusing {out} (key {key})")
        return out
    opts = [*opts, "TAG", f"pretrain_{key}"]
    cfg = load_cfg(cfg_path, opts)
    folder = output_dir(cfg)
    final = os.path.join(folder, "model_final.pth")
    start = time.time()
    if not os.path.isfile(final):
        resume = os.path.isfile(os.path.join(folder, LAST_POINTER))
        log(f"[pretrain] training {cfg_path} into {folder}" + (" (resuming)" if resume else ""))
        train.main(["--cfg", cfg_path, *(["--resume"] if resume else []), *opts])
    state = load_checkpoint(final, "pretraining checkpoint")["model"]
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with atomic_path(out) as tmp:
        torch.save(backbone, tmp)
    write_json_atomic(out + ".json", {"key": key, "source": final, "config": cfg_to_yaml(cfg),
                                      "seconds": round(time.time() - start, 1)}, indent=1)
    log(f"[pretrain] published the backbone of {final} at {out} (key {key}, {time.time() - start:.0f}s)")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cfg", required=True, help="pretraining config (TRAIN.TYPE base on the pretraining list)")
    p.add_argument("--out", required=True, help="weight file to publish (what *.PRETRAINED_PATH names)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    args = p.parse_args(argv)
    ensure_pretrained(args.cfg, args.out, args.opts)


if __name__ == "__main__":
    run(main)
