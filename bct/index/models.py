"""Which model embedded a row, and which models may search it (docs/deploying.md, "Compatibility").

A model is known by its checkpoint's content (sha256 digest) and a short name. A compatible model's
checkpoint records the old model it was trained against: `meta["old_model_digest"]` when the
trainer wrote it, else the digest of the file at `meta["old_model_path"]` if that file still exists.
Following these links gives the model's lineage, newest first: C -> B -> A. Query model Q may search
the rows of model R when R is Q or R is in Q's lineage (a newer model reads its ancestors' rows; the
reverse direction is not what compatible training optimises or measures). The index's models table
keeps each model's lineage from the moment it was added, so the chain survives moved checkpoints.

Two kinds of entries are not plain checkpoints. A FastFill transformation's entry (`index transform`)
names rows that hold h(old vector): its digest is the transformation file's, its lineage starts at the
old model, and `space` is the digest of the new model whose embedding space those rows are in, so
the rows count as the new model's when a query model is checked. A BT2 model (meta
"compatible_dims") fits two row sizes: its full embedding and its first compatible_dims columns.
"""
import os
from dataclasses import asdict, dataclass, field

from bct.utils.errors import BadInputError
from bct.utils.fileio import file_digest

# Models trained without an old model: their lineage is empty and complete.
_STANDALONE_TYPES = ("base", "init")
MAX_GENERATIONS = 64


@dataclass
class ModelInfo:
    """What the index records about a model (one entry of the manifest's models table)."""

    name: str
    digest: str
    arch: str
    emb_dim: int
    input_size: int
    resize: str
    path: str = ""
    old_digest: str = ""            # "" when trained without an old model or when unknown
    lineage: list = field(default_factory=list)   # ancestors' digests, nearest first
    lineage_complete: bool = True   # False: the chain breaks at lineage[-1] (or at old_digest)
    lineage_note: str = ""          # why the chain is incomplete
    compatible_dims: int = 0        # BT2: the leading dimensions that meet older rows (0: all of emb_dim)
    space: str = ""                 # a transformation's entry: the digest of the model its rows estimate
    code: int = -1

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.digest[:12]}"

    @property
    def home(self) -> str:
        """The digest of the model whose embedding space this entry's rows are in."""
        return self.space or self.digest

    def sizes(self) -> tuple:
        """The row sizes this model's embeddings fit: emb_dim, and a BT2 model's compatible part."""
        return (self.emb_dim, self.compatible_dims) if self.compatible_dims else (self.emb_dim,)

    def entry(self) -> dict:
        return asdict(self)

    @classmethod
    def from_entry(cls, entry: dict) -> "ModelInfo":
        return cls(**{k: v for k, v in entry.items() if k in cls.__dataclass_fields__})


def model_name(path: str) -> str:
    """A short name for a checkpoint: its file stem, or its run folder's name for a trainer's
    model_final.pth / ckpt_epoch_N.pth."""
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem.endswith(".pth"):
        stem = stem[:-4]
    if stem == "model_final" or stem.startswith("ckpt_"):
        parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
        return parent or stem
    return stem


def resolve_old_path(old_path: str, ckpt_path: str) -> str:
    """The file an `old_model_path` names, or "": as given (absolute, or relative to the working
    folder), else relative to each folder above the checkpoint (a run started from a repository
    root records paths relative to it)."""
    if not old_path:
        return ""
    if os.path.isfile(old_path):
        return os.path.abspath(old_path)
    if os.path.isabs(old_path):
        return ""
    folder = os.path.dirname(os.path.abspath(ckpt_path))
    while True:
        candidate = os.path.join(folder, old_path)
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
        parent = os.path.dirname(folder)
        if parent == folder:
            return ""
        folder = parent


def _old_link(meta: dict, path: str):
    """(old digest or "", old checkpoint file or "", note): the old model a checkpoint names."""
    if meta.get("train_type") in _STANDALONE_TYPES or (meta.get("role") == "old" and not meta.get("old_model_path")):
        return "", "", ""
    digest = str(meta.get("old_model_digest") or "")
    old_file = resolve_old_path(str(meta.get("old_model_path") or ""), path)
    if not digest and old_file:
        digest = file_digest(old_file)
    if digest:
        return digest, old_file, ""
    if meta.get("old_model_path"):
        return "", "", f"its old model {meta['old_model_path']} is not found and it records no old-model digest"
    return "", "", "its checkpoint does not say which old model it was trained against"


def describe(source, name: str = "", table=(), checkpoint: dict = None) -> ModelInfo:
    """The ModelInfo of a checkpoint path or of a model from bct.load_model (which carries
    source_path). `table`: ModelInfo entries already known (the index's models), whose recorded
    lineage is used when the chain reaches one of them."""
    from bct.models.loading import input_settings, load_checkpoint

    path = source if isinstance(source, (str, os.PathLike)) else getattr(source, "source_path", "")
    if not path:
        raise BadInputError("model: give a checkpoint path or a model from bct.load_model (it knows its file)")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BadInputError(f"model checkpoint {path} does not exist")
    if not isinstance(source, (str, os.PathLike)) and hasattr(source, "meta") and hasattr(source, "input_size"):
        meta = source.meta  # a model from bct.load_model carries its checkpoint's meta and inputs
        inputs = {"input_size": source.input_size, "resize": source.resize}
    else:
        ckpt = checkpoint if checkpoint is not None else load_checkpoint(path, "model")
        meta, inputs = ckpt["meta"], input_settings(ckpt)
    info = ModelInfo(name=name or model_name(path), digest=file_digest(path), arch=str(meta.get("arch", "?")),
                     emb_dim=int(meta["emb_dim"]), input_size=int(inputs["input_size"]), resize=inputs["resize"],
                     path=os.path.abspath(path))
    narrow = int(meta.get("compatible_dims", 0) or 0)
    info.compatible_dims = narrow if 0 < narrow < info.emb_dim else 0
    info.old_digest, old_file, note = _old_link(meta, path)
    _fill_lineage(info, old_file, note, {m.digest: m for m in table})
    return info


def _fill_lineage(info: ModelInfo, old_file: str, note: str, known: dict) -> None:
    """Follow old-model links from `info` through the table and the checkpoint files."""
    from bct.models.loading import load_checkpoint

    lineage, digest, complete = [], info.old_digest, not note
    seen = {info.digest}
    while digest and len(lineage) < MAX_GENERATIONS:
        if digest in seen:
            note, complete = f"its lineage loops at {digest[:12]}", False
            break
        seen.add(digest)
        lineage.append(digest)
        if digest in known:
            entry = known[digest]
            lineage += [d for d in entry.lineage if d not in seen]
            complete, note = entry.lineage_complete, entry.lineage_note
            break
        if not old_file:
            complete, note = False, f"the checkpoint of its ancestor {digest[:12]} is not found"
            break
        meta = load_checkpoint(old_file, "old model")["meta"]
        digest, next_file, note = _old_link(meta, old_file)
        complete = not note
        old_file = next_file
    info.lineage, info.lineage_complete, info.lineage_note = lineage, complete, note


def check_compatible(query: ModelInfo, rows: list, force: bool, action: str = "search") -> list:
    """Refuse (one line) a query model that may not search the rows of the models in `rows`
    (ModelInfo entries); `force` turns the refusal into returned warnings. Embedding sizes must
    always agree (a BT2 model also fits rows of its compatible size). Rows and queries are judged by the
    space they are in (`home`): a transformation's rows are its new model's."""
    warnings = []
    for r in rows:
        if not set(r.sizes()) & set(query.sizes()):
            raise BadInputError(f"{action}: model {query.tag} embeds in {query.emb_dim} dimensions but the index rows "
                                f"of {r.tag} have {r.emb_dim}; use a model of the index's embedding size")
        if r.home == query.home or r.home in query.lineage:
            continue
        if query.lineage_complete:
            trained = f"trained against {query.old_digest[:12]}" if query.old_digest else "trained without an old model"
            why = (f"model {query.tag} is not compatible with the index rows of {r.tag}: {r.tag} is not in its "
                   f"lineage ({trained}; lineage {[d[:12] for d in query.lineage]})")
        else:
            why = (f"cannot tell whether model {query.tag} is compatible with the index rows of {r.tag}: "
                   f"{query.lineage_note}")
        if not force:
            raise BadInputError(f"{action}: {why}; give --force (force=True) to {action} anyway")
        warnings.append(why)
    return warnings
