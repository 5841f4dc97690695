"""A resized copy of the images of a list, made once so that training decodes small files.

``resize_list`` writes, for every line ``relative/path label`` of a list, ``<out>/relative/path``:
the image converted to RGB (as ``bct.data.image`` decodes it), shrunk so that its longer side
(``max_side``) or its shorter side (``min_side``) is ``side`` pixels with the aspect ratio kept,
and saved as a JPEG of quality ``quality``. An image that is already that small is copied byte for
byte (after checking that it decodes). The relative paths, hence the list files, stay the same:
point TRAIN.ROOT at the copy. The JPEG fast path decodes the source (draft mode and reducing
resize, bct/data/image.py); a Lanczos filter makes the final size.

Resumable: every file is written under a temporary name and renamed when whole, so a killed run
leaves only whole files under final names (plus temporary files, removed by the next run), and a
rerun skips the files that are there. A file counts as there when it is not empty and ends with the
JPEG end-of-image marker or has its source's size (a byte copy); anything else is rewritten.
``<out>/resize_manifest.json`` records the settings (with the list's sha256) from the start, and the
counts at the end; a rerun with other settings is refused.

Unreadable source images are counted, listed in the manifest (the first 100) and reported; the
copy lacks them, as ``TRAIN.SKIP_BAD_IMAGES`` expects.
"""
import io
import json
import multiprocessing
import os
import signal
import time

from PIL import Image

from bct.data.image import BadImageError, decode_rgb, read_image_bytes
from bct.data.lists import read_image_list
from bct.utils.errors import BadInputError
from bct.utils.fileio import atomic_path, file_digest, is_atomic_temp, write_json_atomic

MANIFEST = "resize_manifest.json"
MODES = ("max_side", "min_side")
# Failures named in the manifest; the count covers all.
MAX_LISTED_FAILURES = 100
_SETTING_KEYS = ("mode", "side", "quality", "list_sha256")


def target_size(width: int, height: int, mode: str, side: int):
    """(width, height) after shrinking so that the longer ("max_side") or shorter ("min_side") side
    is `side`, or None when the image is already that small."""
    scale = side / (max(width, height) if mode == "max_side" else min(width, height))
    if scale >= 1.0:
        return None
    return max(1, round(width * scale)), max(1, round(height * scale))


def is_whole(dst: str, src: str) -> bool:
    """Whether an existing output file is complete: a JPEG with its end-of-image marker, or a byte
    copy of its source (same size)."""
    try:
        size = os.path.getsize(dst)
        if size == 0:
            return False
        with open(dst, "rb") as f:
            f.seek(size - 2)
            if f.read(2) == b"\xff\xd9":
                return True
        return size == os.path.getsize(src)
    except OSError:
        return False


def _worker_signals():
    """Pool workers die on SIGTERM (Pool.terminate) and leave Ctrl-C to the parent, whatever
    handlers the parent process had installed when it forked them."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def resize_one(task):
    """Make one output file. task = (src, dst, mode, side, quality).

    Returns (status, bytes written or present, reason): status "resized", "copied", "present"
    (already done) or "failed" (reason says why)."""
    src, dst, mode, side, quality = task
    if is_whole(dst, src):
        return "present", os.path.getsize(dst), ""
    try:
        data = read_image_bytes(src)
        try:
            size = Image.open(io.BytesIO(data)).size
        except Exception:
            size = None  # not an image: decode_rgb below says so in the usual words
        target = target_size(*size, mode, side) if size else None
        img = decode_rgb(data, src, (lambda w, h: target) if target else None)
    except BadImageError as e:
        return "failed", 0, e.reason
    with atomic_path(dst, sync=False) as tmp:
        if target is None:
            with open(tmp, "wb") as f:
                f.write(data)
        else:
            img.resize(target, Image.LANCZOS).save(tmp, "JPEG", quality=quality)
        written = os.path.getsize(tmp)
    return ("copied" if target is None else "resized"), written, ""


def remove_stale_temporaries(out: str) -> int:
    """Delete the temporary files that a killed run left under `out`; returns how many."""
    removed = 0
    for folder, _, files in os.walk(out):
        for name in files:
            if is_atomic_temp(name):
                os.remove(os.path.join(folder, name))
                removed += 1
    return removed


def _check_out_folder(out: str, settings: dict) -> None:
    manifest = os.path.join(out, MANIFEST)
    if os.path.isfile(manifest):
        try:
            with open(manifest) as f:
                old = json.load(f)["settings"]
        except (ValueError, KeyError, TypeError) as e:
            raise BadInputError(f"{manifest}: not a manifest of bct.tools.resize_images ({e}); "
                                "remove it or choose another --out") from None
        changed = [k for k in _SETTING_KEYS if old.get(k) != settings[k]]
        if changed:
            diff = ", ".join(f"{k} {old.get(k)!r} -> {settings[k]!r}" for k in changed)
            raise BadInputError(f"--out {out} holds a copy made with other settings ({diff}); choose another "
                                "--out or delete that folder")
    elif os.path.isdir(out) and os.listdir(out):
        raise BadInputError(f"--out {out} is a non-empty folder without {MANIFEST}; choose a new or empty folder")


def resize_list(list_path: str, root: str, out: str, side: int, mode: str = "max_side", quality: int = 90,
                workers: int = 1, progress: bool = True) -> dict:
    """Write the resized copy of every image of `list_path` (paths relative to `root`) under `out`.

    Returns the manifest (also written to <out>/resize_manifest.json). Raises BadInputError after
    the whole list is done when some images could not be read (the manifest names them).
    """
    if mode not in MODES:
        raise BadInputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if side < 1 or not 1 <= quality <= 100:
        raise BadInputError(f"the side must be >= 1 pixel and the JPEG quality in 1..100, got {side} and {quality}")
    paths, _ = read_image_list(list_path, root)
    if os.path.abspath(out) == os.path.abspath(root):
        raise BadInputError(f"--out {out} is the image root itself; the copy needs its own folder")
    settings = {"mode": mode, "side": int(side), "quality": int(quality), "list": os.path.abspath(list_path),
                "list_sha256": file_digest(list_path), "root": os.path.abspath(root)}
    _check_out_folder(out, settings)
    manifest_path = os.path.join(out, MANIFEST)
    write_json_atomic(manifest_path, {"settings": settings, "complete": False}, indent=1)
    stale = remove_stale_temporaries(out)

    tasks = [(os.path.join(root, p), os.path.join(out, p), mode, side, quality) for p in paths]
    counts = {"resized": 0, "copied": 0, "present": 0, "failed": 0}
    failures, total_bytes = [], 0
    t0 = time.time()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(tasks), desc="resize", unit="img", disable=None, dynamic_ncols=True)
    pool = None
    try:
        if workers > 1:
            pool = multiprocessing.Pool(workers, initializer=_worker_signals)
            results = pool.imap(resize_one, tasks, chunksize=max(1, min(64, len(tasks) // (workers * 8) or 1)))
        else:
            results = map(resize_one, tasks)
        for i, (status, nbytes, reason) in enumerate(results):
            counts[status] += 1
            total_bytes += nbytes
            if status == "failed" and len(failures) < MAX_LISTED_FAILURES:
                failures.append({"path": paths[i], "line": i + 1, "reason": reason})
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    elapsed = time.time() - t0
    manifest = {"settings": settings, "complete": counts["failed"] == 0, "images": len(tasks),
                **counts, "failures": failures, "stale_temporaries_removed": stale, "bytes": total_bytes,
                "seconds": round(elapsed, 3)}
    write_json_atomic(manifest_path, manifest, indent=1)
    if counts["failed"]:
        first = failures[0]
        raise BadInputError(f"{counts['failed']} of {len(tasks)} images could not be read and are not in the copy "
                            f"(first: {first['path']} (line {first['line']} of {list_path}): {first['reason']}); "
                            f"see {manifest_path}, or train with TRAIN.SKIP_BAD_IMAGES True")
    return manifest
