"""Configs as objects: a run's config is derived from a loaded one by clone + merge, never by argv."""
from bct.utils import keys
from bct.utils.errors import BadInputError


def derive(cfg, values: dict):
    """A frozen copy of ``cfg`` with ``values`` ({"SECTION.KEY": value}) set; every key must exist."""
    from bct.config.loader import _coerce

    out = cfg.clone()
    out.defrost()
    for key, value in values.items():
        node, last = keys.parent(out, key)
        if last not in node:
            raise BadInputError(f"unknown config key {key}")
        node[last] = _coerce(key, value, node[last], "derived config")
    out.freeze()
    return out
