"""Checkpoint files outside training: an untrained model's checkpoint, and conversion between the
reference implementation's layout and bct's (docs/models.md)."""
from bct.utils.errors import BadInputError


def write_untrained(cfg, role: str, out: str, seed: int = 0) -> dict:
    """Write the checkpoint of the untrained ``role`` model of ``cfg`` (its initialisation); returns its meta."""
    import torch

    from bct.config.loader import cfg_to_yaml
    from bct.engine.checkpoint import save_checkpoint
    from bct.models.build import build_model

    torch.manual_seed(seed)
    model = build_model(cfg, role)
    meta = dict(model.meta, train_type="init", comp_loss="none", old_model_path="")
    save_checkpoint(out, {"model": model.state_dict(), "meta": meta, "epoch": 0, "config": cfg_to_yaml(cfg)})
    return meta


def convert(src: str, dst: str, to: str = "bct") -> dict:
    """Convert ``src`` to the ``to`` layout ("bct": the weights and meta of a reference checkpoint;
    "reference": epoch, arch and model of a bct one) at ``dst``; returns a summary."""
    import torch

    from bct.engine.checkpoint import save_checkpoint
    from bct.models.reference import bct_to_reference
    from bct.models.loading import read_model_checkpoint
    from bct.utils.fileio import atomic_path

    ckpt = read_model_checkpoint(src, "--model")
    meta = ckpt["meta"]
    if to == "bct":
        if meta.get("source") != "reference":
            raise BadInputError(f"convert_checkpoint: {src} is already a bct checkpoint; "
                                f"use --to reference to convert it to the reference's layout")
        save_checkpoint(dst, {k: ckpt[k] for k in ("model", "meta", "extra", "epoch")})
        written = len(ckpt["model"]) + len(ckpt["extra"])
        dropped = "optimizer, grad_scaler, config and best-accuracy numbers left out"
    else:
        out = bct_to_reference(ckpt, src)
        with atomic_path(dst) as tmp:
            torch.save(out, tmp)
        written = len(out["model"])
        dropped = "only epoch, arch and model written"
    return {"meta": meta, "epoch": ckpt.get("epoch", 0), "tensors": written, "dropped": dropped}
