"""Old-class statistics of docs/method.md, read once from JSON into device tensors for the losses.

`bct.tools.extract_feat` writes two files with the same layout,
``{"<class id>": {"center": [D floats], "radius": [sorted inlier values]}}``:
- radius.json (COMP_LOSS.RADIUS_FILE): "radius" holds the distances ||f_hat - c_k||;
- angle.json (COMP_LOSS.ANGLE_FILE): "radius" holds the angles acos(f_hat . c_k / ||c_k||), in
  radians. The key is "radius" in both files, as in the reference's angle file, so one reader
  serves both.
The centre c_k is the mean of the normalised old features, not re-normalised (||c_k|| <= 1).
A class with at most one inlier is degenerate ("invalid") and the boundary losses skip it; a
class id absent from the file is invalid too, so statistics may cover fewer classes than
OLD_MODEL.NUM_CLASSES. The losses index these tensors by label; nothing is parsed per step.
Every value is checked when the file is read: a centre or radius that is not a finite number
(Infinity would switch the boundary off for that class, NaN would surface much later as a
non-finite loss) or a negative radius is refused, naming the file and the class.
"""
import json
import math
import os
from dataclasses import dataclass, fields
from typing import Optional

import numpy as np
import torch

from bct.utils.errors import BadInputError
from bct.utils.fileio import read_text

__all__ = ["OldClassStats", "load_old_stats"]

_MAKE_HINT = ("make it with `bash scripts/extract_feat.sh` "
              "(python -m bct.tools.extract_feat --cfg configs/extract_feat.yml)")


@dataclass
class OldClassStats:
    """Per-old-class tensors, all indexed by the old class id (C_old = num_classes).

    centers (C_old, D) float: un-normalised centres (zero rows for absent classes).
    r_min, r_median, r_max (C_old,) float: radius[0], radius[n // 2] and radius[-1] of the
        sorted inlier distances (0 for absent classes).
    valid (C_old,) bool: present in radius.json with more than one inlier.
    present (C_old,) bool: present in radius.json at all (its centre is meaningful).
    theta_max (C_old,) float or None: largest inlier angle from angle.json (None without it).
    theta_valid (C_old,) bool or None: present in angle.json with more than one inlier.
    num_classes: C_old.
    """

    centers: torch.Tensor
    r_min: torch.Tensor
    r_median: torch.Tensor
    r_max: torch.Tensor
    valid: torch.Tensor
    present: torch.Tensor
    num_classes: int
    theta_max: Optional[torch.Tensor] = None
    theta_valid: Optional[torch.Tensor] = None

    def to(self, device) -> "OldClassStats":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for k, v in moved.items():
            if isinstance(v, torch.Tensor):
                moved[k] = v.to(device)
        return OldClassStats(**moved)


def _read_json(path: str, key: str) -> dict:
    if not path or not os.path.isfile(path):
        raise BadInputError(f"{key} = '{path}': old-class statistics file not found; {_MAKE_HINT} "
                            f"and point {key} at the file it writes")
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise BadInputError(f"{path}: not valid JSON (line {e.lineno}: {e.msg}); {_MAKE_HINT} again") from None
    if not isinstance(data, dict) or not data:
        raise BadInputError(f"{path}: expected a non-empty object {{\"<class id>\": {{\"center\": [...], "
                            f"\"radius\": [...]}}}}; {_MAKE_HINT}")
    return data


def _check_numbers(path: str, cid: int, field: str, values: list) -> None:
    """Refuse an entry that is not a finite JSON number (strings, null, booleans, NaN, Infinity)."""
    if {type(v) for v in values} <= {int, float} and all(map(math.isfinite, values)):
        return
    bad = next(v for v in values if type(v) not in (int, float) or not math.isfinite(v))
    what = "not finite" if type(bad) is float else "not a number"
    raise BadInputError(f"{path}: class {cid}: '{field}' holds {json.dumps(bad)} ({what}); every value must be a "
                        f"finite number: {_MAKE_HINT} again")


def _parse(path: str, data: dict, num_classes: int, emb_dim: int):
    """Validate a statistics dict; returns (class ids, centres (n, D), per-class value lists)."""
    ids, centres, values = [], [], []
    out_of_range = []
    for key, entry in data.items():
        try:
            cid = int(key)
        except ValueError:
            raise BadInputError(f"{path}: key '{key}' is not an integer class id; {_MAKE_HINT}") from None
        if cid < 0 or cid >= num_classes:
            out_of_range.append(cid)
            continue
        if not isinstance(entry, dict) or "center" not in entry or "radius" not in entry:
            raise BadInputError(f"{path}: class {cid} lacks a 'center' or a 'radius' list; {_MAKE_HINT}")
        centre, radius = entry["center"], entry["radius"]
        if not isinstance(centre, list) or not isinstance(radius, list):
            raise BadInputError(f"{path}: class {cid}: 'center' and 'radius' must be lists of numbers; {_MAKE_HINT}")
        if len(centre) != emb_dim:
            raise BadInputError(f"{path}: class {cid} has a {len(centre)}-d centre, expected MODEL.EMB_DIM = "
                                f"{emb_dim}; the statistics come from a model of another embedding size")
        if len(radius) == 0:
            raise BadInputError(f"{path}: class {cid} has an empty 'radius' list; {_MAKE_HINT} again")
        _check_numbers(path, cid, "center", centre)
        _check_numbers(path, cid, "radius", radius)
        if min(radius) < 0:
            raise BadInputError(f"{path}: class {cid}: 'radius' holds {min(radius)!r}, a negative distance; "
                                f"{_MAKE_HINT} again")
        ids.append(cid)
        centres.append(centre)
        values.append(sorted(float(r) for r in radius))
    if out_of_range:
        raise BadInputError(
            f"{path}: class {out_of_range[0]} is outside 0..{num_classes - 1} ({len(out_of_range)} of its "
            f"{len(data)} ids are), expected ids below OLD_MODEL.NUM_CLASSES = {num_classes}; set "
            f"OLD_MODEL.NUM_CLASSES to the old model's class count or re-extract the statistics")
    return ids, np.asarray(centres, dtype=np.float32), values


def load_old_stats(radius_json: str, angle_json: Optional[str] = None, *, num_classes: int, emb_dim: int,
                   device="cpu") -> OldClassStats:
    """Read radius.json (and optionally angle.json) into an OldClassStats on `device`.

    num_classes: OLD_MODEL.NUM_CLASSES (C_old). emb_dim: MODEL.EMB_DIM (D). Raises BadInputError
    (one line naming the file, the class and the expected value) for a missing or malformed
    file, a class id outside 0..C_old-1 or a centre of the wrong size. Runs once, before training.
    """
    ids, centres, radii = _parse(radius_json, _read_json(radius_json, "COMP_LOSS.RADIUS_FILE"), num_classes, emb_dim)
    idx = torch.as_tensor(ids, dtype=torch.long)
    centers = torch.zeros(num_classes, emb_dim)
    centers[idx] = torch.from_numpy(centres)
    r_min, r_median, r_max = (torch.zeros(num_classes) for _ in range(3))
    r_min[idx] = torch.tensor([r[0] for r in radii])
    r_median[idx] = torch.tensor([r[len(r) // 2] for r in radii])
    r_max[idx] = torch.tensor([r[-1] for r in radii])
    valid = torch.zeros(num_classes, dtype=torch.bool)
    valid[idx] = torch.tensor([len(r) > 1 for r in radii])
    present = torch.zeros(num_classes, dtype=torch.bool)
    present[idx] = True

    theta_max = theta_valid = None
    if angle_json is not None:
        a_ids, _, angles = _parse(angle_json, _read_json(angle_json, "COMP_LOSS.ANGLE_FILE"), num_classes, emb_dim)
        a_idx = torch.as_tensor(a_ids, dtype=torch.long)
        theta_max = torch.zeros(num_classes)
        theta_max[a_idx] = torch.tensor([a[-1] for a in angles])
        theta_valid = torch.zeros(num_classes, dtype=torch.bool)
        theta_valid[a_idx] = torch.tensor([len(a) > 1 for a in angles])

    stats = OldClassStats(centers=centers, r_min=r_min, r_median=r_median, r_max=r_max, valid=valid,
                          present=present, num_classes=num_classes, theta_max=theta_max, theta_valid=theta_valid)
    return stats.to(device)
