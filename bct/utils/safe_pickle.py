"""Unpickling without running code: the one allow-list unpickler of bct.

A pickle can name any importable function and make its reader call it: that is how a malicious
file runs code. `RestrictedUnpickler` resolves only the globals of its `allowed` table and refuses
every other one by name (`RefusedGlobal`) before anything is called. Two tables are used:

- plain data (`PlainDataUnpickler`, for revisitop ground-truth files): builtin containers and
  scalars (list, tuple, dict, set, frozenset, int, float, complex, bool, str, bytes, bytearray),
  `_codecs.encode` with the latin-1 encoding only (how protocol-2 pickles store bytes), and what
  NumPy needs to rebuild arrays, dtypes and scalars;
- checkpoints (`read_torch_file`): the same, plus torch's tensor and parameter rebuild functions
  (storage types are resolved by torch itself), collections.OrderedDict, and yacs.config.CfgNode,
  rebuilt as a plain dict (no yacs code runs; yacs need not be installed).

This module imports torch only inside `read_torch_file`.
"""
import builtins
import codecs
import collections
import os
import pickle

import numpy as np

from bct.utils.errors import BadInputError

__all__ = ["PlainDataUnpickler", "RefusedGlobal", "RestrictedUnpickler", "plain", "read_torch_file"]


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a global outside the allowed table; `name` is "module.name" as the file spells it."""

    def __init__(self, name: str):
        super().__init__(f"refused global {name}")
        self.name = name


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler that resolves only the globals of `allowed` ({(module, name): object})."""

    allowed: dict = {}

    def find_class(self, module, name):
        key = ("builtins" if module == "__builtin__" else module, name)  # protocol-2 spelling
        try:
            return self.allowed[key]
        except (KeyError, TypeError):
            raise RefusedGlobal(f"{module}.{name}") from None


def _latin1_encode(text, encoding="latin1"):
    if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise RefusedGlobal(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _plain_data_globals() -> dict:
    """Builtin containers and scalars, latin-1 bytes, and NumPy's rebuild callables, taken from the
    installed NumPy so that both the numpy.core (NumPy 1) and numpy._core (NumPy 2) spellings resolve."""
    table = {("builtins", n): getattr(builtins, n) for n in (
        "list", "tuple", "dict", "set", "frozenset", "int", "float", "complex", "bool", "str", "bytes", "bytearray")}
    table[("_codecs", "encode")] = _latin1_encode
    table[("numpy", "ndarray")] = np.ndarray
    table[("numpy", "dtype")] = np.dtype
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = np.ndarray((0,)).__reduce__()[0]
        table[(f"{core}.multiarray", "scalar")] = np.float64(0).__reduce__()[0]
        table[(f"{core}.numeric", "_frombuffer")] = np.arange(2).__reduce_ex__(5)[0]
    return table


class PlainDataUnpickler(RestrictedUnpickler):
    allowed = _plain_data_globals()


class _CfgDict(dict):
    """Stand-in for yacs.config.CfgNode: keeps the items, drops the node's flags."""

    def __setstate__(self, state):
        pass


def plain(obj):
    """The loaded object with every CfgNode stand-in turned into a plain dict (recursively)."""
    if isinstance(obj, _CfgDict) or type(obj) is dict:
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and any(isinstance(v, dict) for v in obj):
        return type(obj)(plain(v) for v in obj)
    return obj


_CHECKPOINT_MODULE = None


def _checkpoint_pickle_module():
    """The pickle_module handed to torch.load: an Unpickler class with the checkpoint table, and load."""
    global _CHECKPOINT_MODULE
    if _CHECKPOINT_MODULE is None:
        import torch._utils

        table = dict(PlainDataUnpickler.allowed)
        table[("collections", "OrderedDict")] = collections.OrderedDict
        table[("yacs.config", "CfgNode")] = _CfgDict
        for name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state"):
            table[("torch._utils", name)] = getattr(torch._utils, name)
        unpickler = type("CheckpointUnpickler", (RestrictedUnpickler,), {"allowed": table})
        # torch.load reads a legacy-format file's header with pickle_module.load.
        _CHECKPOINT_MODULE = type("CheckpointPickle", (), {
            "Unpickler": unpickler, "load": staticmethod(lambda f, **kw: unpickler(f, **kw).load())})
    return _CHECKPOINT_MODULE


def read_torch_file(path: str, what: str):
    """The object saved at `path` (torch.save format), tensors on the CPU; no code from the file runs.

    torch's weights-only reader is tried first (it reads every bct checkpoint); files it refuses
    (the reference's, whose config is a yacs CfgNode) are read with the checkpoint table above.
    Every failure is a BadInputError of one line naming `what` and the path, a refused global as
    module.name.
    """
    import torch

    if not path:
        raise BadInputError(f"{what}: no checkpoint path given")
    if not os.path.isfile(path):
        raise BadInputError(f"{what}: checkpoint {path} does not exist")
    try:
        # A zip-format file names its globals in a small record: skip the weights-only attempt (which
        # would read the tensors once for nothing) when it names some that weights_only refuses.
        try:
            restricted = bool(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except Exception:  # legacy format or a damaged file: torch.load below decides
            restricted = False
        try:
            if not restricted:
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            pass
        obj = torch.load(path, map_location="cpu", pickle_module=_checkpoint_pickle_module(), weights_only=False)
        return plain(obj)
    except RefusedGlobal as e:
        raise BadInputError(
            f"{what}: cannot read checkpoint {path}: its pickle would call {e.name}, which a checkpoint never "
            f"needs; refused, nothing was run (only tensors, plain containers, numpy numbers and yacs configs "
            f"are read)"
        ) from None
    except Exception as e:
        reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise BadInputError(
            f"{what}: cannot read checkpoint {path} (truncated, corrupt or not a checkpoint: {reason})"
        ) from None
