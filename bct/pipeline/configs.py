"""Configs as objects: a run's config is derived from a loaded one by clone + merge, never by argv."""
from bct.utils.errors import BadInputError


def derive(cfg, values: dict):
    """A frozen copy of ``cfg`` with ``values`` ({"SECTION.KEY": value}) set; every key must exist."""
    from bct.config import _coerce

    out = cfg.clone()
    out.defrost()
    for key, value in values.items():
        node, parts = out, key.split(".")
        for p in parts[:-1]:
            node = node[p]
        if parts[-1] not in node:
            raise BadInputError(f"unknown config key {key}")
        node[parts[-1]] = _coerce(key, value, node[parts[-1]], "derived config")
    out.freeze()
    return out
