"""Configuration: defaults (bct/config/defaults.py, each key with its rule) -> yaml (with _BASE_
inheritance) -> KEY VALUE pairs -> checks -> frozen config (the loader: bct/config/loader.py).

``load_cfg(path, opts)`` is the one entry point for a config file: ``<setting>/new_<method>.yml`` is
the new model of a catalogue method (bct/config/methods.py) whenever the setting folder has a
Base-new.yml and the method is in the catalogue, the file itself being an optional per-setting
override; any other file is loaded as it is. Loading a yaml imports neither torch nor bct.losses.
"""
from bct.config.loader import load_layers
from bct.config.methods import load_method_cfg, method_spec_of_path

__all__ = ["load_cfg"]


def load_cfg(path: str = "", opts=None, freeze: bool = True, notes: list = None):
    """defaults -> yaml file (with _BASE_) -> KEY VALUE overrides -> reference keys -> checks -> (frozen) config.

    A line saying how older or reference keys were mapped or ignored is appended to ``notes`` when
    given (the tools log it once their logger is set up), else logged on the "bct" logger.
    """
    spec = method_spec_of_path(path) if path else None
    if spec is not None:
        return load_method_cfg(spec[0], spec[1], opts or (), notes=notes, freeze=freeze)
    return load_layers([path] if path else [], opts, freeze=freeze, notes=notes, label=path or "command line")
