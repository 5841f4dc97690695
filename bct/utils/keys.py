"""Dotted config key paths ("TRAIN.OPTIMIZER.BASE_LR") over nested mappings (a yacs CfgNode or the
dict of a stored config): read one, ask whether it exists, find the node that holds it, flatten."""

__all__ = ["get", "has", "parent", "flatten"]


def get(node, key: str):
    """The value at ``key``; KeyError when a part of the path does not exist."""
    for part in key.split("."):
        node = node[part]
    return node


def has(node, key: str) -> bool:
    try:
        get(node, key)
    except (KeyError, TypeError):
        return False
    return True


def parent(node, key: str) -> tuple:
    """(the mapping that holds ``key``'s last part, that last part)."""
    *path, last = key.split(".")
    for part in path:
        node = node[part]
    return node, last


def flatten(node, prefix: str = "") -> dict:
    """{dotted key: value} of every leaf of a nested mapping."""
    out = {}
    for k, v in node.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
