"""The catalogue of compatibility methods: bct/methods/<name>.yml, one file per method, shipped inside
the package (an installed wheel lists them from any folder).

A method is a term registered in bct.losses.registry plus its yml (METHOD.TITLE, TRAIN.TYPE,
COMP_LOSS.*; MODULES when the term lives outside bct). Every list of methods (tools, benchmarks) and
every new-model config derives from here (docs/adding_a_method.md):

- ``method_names()`` / ``method_title(name)``: the catalogue, in a stable order;
- ``load_method_cfg(setting_dir, method, opts)``: the config of a method's new model in a setting
  folder (configs, configs/data_split, configs/synthetic, ...): defaults -> <setting>/Base-new.yml ->
  methods/<method>.yml -> <setting>/new_<method>.yml when that optional per-setting override exists
  -> opts. METHOD.NAME is the method's name; the output TAG is Base-new.yml's, with {method} replaced
  by the name (new_{method} when Base-new.yml gives none).

Method ymls kept outside the package join the catalogue through the environment variable
BCT_METHODS_PATH: folders separated by os.pathsep, each holding <name>.yml files. A name found in
the catalogue and in such a folder is the catalogue's.
"""
import os

from bct.config.loader import load_layers
from bct.utils.errors import BadInputError

__all__ = ["methods_dir", "method_names", "method_title", "method_file", "load_method_cfg", "method_spec_of_path",
           "PAPER_ORDER"]

# The order of the paper's tables: the oracle (upper bound) first, then the methods as compared.
PAPER_ORDER = ("oracle", "bct", "lce", "unibct", "hot_refresh", "advbct")
_BASE_NEW = "Base-new.yml"
METHODS_PATH_ENV = "BCT_METHODS_PATH"


def methods_dir() -> str:
    """The folder of method ymls: bct/methods, inside the package (package data of the wheel)."""
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "methods")


def _extra_dirs() -> list:
    """The folders of BCT_METHODS_PATH (os.pathsep-separated), in order; a folder that does not exist
    is one line naming it."""
    dirs = [d for d in os.environ.get(METHODS_PATH_ENV, "").split(os.pathsep) if d]
    for d in dirs:
        if not os.path.isdir(d):
            raise BadInputError(f"{METHODS_PATH_ENV}: {d} is not a folder (give folders of method ymls, "
                                f"separated by '{os.pathsep}')")
    return dirs


def _catalogue_files() -> dict:
    """{name: yml path} of the catalogue and of the BCT_METHODS_PATH folders (the first one wins)."""
    files = {}
    for folder in [methods_dir(), *_extra_dirs()]:
        if os.path.isdir(folder):
            for f in sorted(os.listdir(folder)):
                if f.endswith(".yml"):
                    files.setdefault(f[:-4], os.path.join(folder, f))
    return files


def method_names(include_oracle: bool = True) -> list:
    """Names of the catalogue's ymls (and of those in BCT_METHODS_PATH): oracle, then the paper's order
    (bct, lce, unibct, hot_refresh, advbct), then any others alphabetically."""
    found = sorted(_catalogue_files())
    names = [n for n in PAPER_ORDER if n in found] + [n for n in found if n not in PAPER_ORDER]
    return names if include_oracle else [n for n in names if n != "oracle"]


def method_file(method: str) -> str:
    """The yml of `method`: a catalogue name, or the path of a method yml kept elsewhere (its name is
    the file's stem). A wrong name fails with the list of valid names."""
    if method.endswith((".yml", ".yaml")):
        if not os.path.isfile(method):
            raise BadInputError(f"method file {method} does not exist")
        return method
    path = _catalogue_files().get(method)
    if path is None:
        where = os.pathsep.join([methods_dir(), *_extra_dirs()])
        raise BadInputError(f"method '{method}' is not in the catalogue ({where}); valid names: "
                            f"{', '.join(method_names())}")
    return path


def _name(method: str) -> str:
    return os.path.splitext(os.path.basename(method))[0] if method.endswith((".yml", ".yaml")) else method


def method_title(name: str) -> str:
    """The display title of a method (METHOD.TITLE of its yml; the name when the yml gives none). A
    name outside the catalogue (e.g. "old" in a table) is its own title."""
    if not name.endswith((".yml", ".yaml")) and name not in method_names():
        return name
    cfg = load_layers([method_file(name)], freeze=False, notes=[], sets={"METHOD.NAME": _name(name)})
    return cfg.METHOD.TITLE or _name(name)


def load_method_cfg(setting_dir: str, method: str, opts=(), notes: list = None, freeze: bool = True):
    """The (frozen) config of `method`'s new model in the setting folder `setting_dir` (module
    docstring). `method`: a catalogue name or the path of a method yml."""
    base = os.path.join(setting_dir, _BASE_NEW)
    if not os.path.isfile(base):
        raise BadInputError(f"setting folder {setting_dir}: no {_BASE_NEW} (the new models' shared settings) in it")
    name = _name(method)
    layers = [base, method_file(method)]
    override = os.path.join(setting_dir, f"new_{name}.yml")
    if os.path.isfile(override):
        _check_override(override)
        layers.append(override)
    cfg = load_layers(layers, opts, freeze=False, notes=notes, label=f"{setting_dir}: method {name}",
                      sets={"METHOD.NAME": name})
    if cfg.TAG == "default":
        cfg.TAG = f"new_{name}"
    if freeze:
        cfg.freeze()
    return cfg


def _check_override(path: str) -> None:
    import yaml

    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError):
        return  # the loader reports it with its line
    if isinstance(data, dict) and "_BASE_" in data:
        raise BadInputError(f"config {path}: a per-setting method override sets no _BASE_ (Base-new.yml and "
                            f"the method's yml are applied before it by load_method_cfg)")


def method_spec_of_path(path: str):
    """(setting_dir, method) when `path` names a catalogue method's new model in a setting folder
    (<setting>/new_<method>.yml, the setting holding a Base-new.yml), whether or not the file exists;
    else None."""
    folder, file = os.path.split(path)
    if not (file.startswith("new_") and file.endswith(".yml")):
        return None
    name = file[len("new_"):-len(".yml")]
    if not os.path.isfile(os.path.join(folder or ".", _BASE_NEW)):
        return None
    if name not in _catalogue_files():
        return None
    return folder or ".", name
