"""Building an index: embed a gallery into an index folder, on one process or under torchrun
(docs/deploying.md, "Building").

The rows are cut into chunks of `chunk_rows`; under torchrun rank r embeds chunks r, r + W, ...
(W processes) and writes each as its own shard file, under a temporary name renamed when complete,
so a shard file that exists is a whole one. Rank 0 then records the shards in the manifest and merges
them into vectors.npy. A killed build rerun with the same arguments embeds only the chunks whose
shards are missing; a folder holding another build, or anything else, is refused.
"""
import hashlib
import json
import os
import shutil
import time

import numpy as np

from bct.index import layout
from bct.index.embed import embed_batches, image_dataset, read_gallery
from bct.index.layout import WriterLock, create_array, write_ids, write_manifest, write_state
from bct.index.models import describe
from bct.utils.comm import barrier, get_rank, get_world_size
from bct.utils.errors import AgreedError, BadInputError
from bct.utils.fileio import atomic_path, reserve


def finite_rows(vectors, what: str, ids) -> None:
    """One line naming the first row that holds NaN or inf (such a row could never be found). `ids`: the
    rows' image ids, or a function that reads them (only called for the message)."""
    bad = np.flatnonzero(~np.isfinite(np.asarray(vectors)).all(axis=1))
    if bad.size:
        ids = ids() if callable(ids) else ids
        raise BadInputError(f"{what} NaN or inf for {bad.size} rows (first: {ids[int(bad[0])]!r}); such rows could "
                            f"never be found: nothing was written")


def _ids_digest(ids, labels) -> str:
    h = hashlib.sha256()
    for i in ids:
        h.update(i.encode("utf-8") + b"\n")
    if labels is not None:
        h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def _shard_path(folder: str, chunk: int) -> str:
    return os.path.join(folder, layout.BUILD, f"shard-{chunk:06d}.npz")


def _shard_ok(path: str, rows: int, dim: int) -> bool:
    """A shard file that holds `rows` x `dim` features (files are renamed only when whole; this
    also turns away a shard damaged on disk)."""
    try:
        with np.load(path) as z:
            v, ok = z["vectors"], z["ok"]
            return v.shape == (rows, dim) and v.dtype == np.float32 and ok.shape == (rows,)
    except (OSError, ValueError, KeyError, EOFError):
        return False


def _refuse_foreign_folder(out: str) -> None:
    """One line, before anything is written into it, for a folder that holds files but no index."""
    if os.path.isdir(out) and not os.path.isfile(os.path.join(out, layout.MANIFEST)) and \
            [n for n in os.listdir(out) if n != layout.WRITER_LOCK]:
        raise BadInputError(f"--out {out} is a folder that is not empty and holds no bct index; give a new or "
                            f"empty folder")


def _prepare_folder(out: str, key: str, manifest: dict) -> str:
    """Rank 0: 'reuse' (the same finished index is there), 'resume' or 'new'; one line for a folder
    that holds something else."""
    path = os.path.join(out, layout.MANIFEST)
    if os.path.isfile(path):
        old = layout.read_manifest(out)
        if old.get("build", {}).get("key") != key:
            what = "a finished index" if old.get("status") == "ready" else "an unfinished build"
            raise BadInputError(f"--out {out} already holds {what} of another gallery, model or setting; choose "
                                f"another --out (or delete that folder)")
        return "reuse" if old.get("status") == "ready" else "resume"
    if os.path.isdir(out) and [n for n in os.listdir(out) if n != layout.WRITER_LOCK]:
        raise BadInputError(f"--out {out} is a folder that is not empty and holds no bct index; give a new or "
                            f"empty folder")
    write_manifest(out, manifest)
    return "new"


def build_index(out: str, model, list_path: str = "", root: str = "", folder: str = "", *, name: str = "",
                batch_size: int = 64, workers: int = 2, device="cpu", chunk_rows: int = 0, amp: bool = True,
                skip_bad: bool = False, input_size: int = 0, resize: str = "", progress=None,
                log=print, backend: str = "files", uri: str = "", token: str = "", collection: str = "") -> dict:
    """Embed the gallery (image list + root, or folder) with `model` into the index folder `out`.

    Returns {"rows", "dim", "model", "seconds", "images_per_s", "reused"}. Under torchrun every rank
    calls this; each embeds its share of the chunks and rank 0 merges.
    """
    from bct.models.loading import load_model

    rank, world = get_rank(), get_world_size()
    ids, labels, source = read_gallery(list_path, root, folder)
    n = len(ids)
    net = model if not isinstance(model, (str, os.PathLike)) else load_model(model, device)
    if input_size or resize:
        from bct.data.transforms import build_transform
        net.input_size, net.resize = int(input_size or net.input_size), resize or net.resize
        net.transform = build_transform(net.input_size, net.resize)
    info = describe(net, name)
    info.code = 0
    dim = info.emb_dim
    if batch_size <= 0:
        raise BadInputError(f"--batch-size must be positive, got {batch_size}")
    batch = 1 if info.resize == "aspect" else batch_size
    chunk_rows = chunk_rows or max(batch, 64 * batch)
    chunk_rows = (chunk_rows + batch - 1) // batch * batch
    n_chunks = (n + chunk_rows - 1) // chunk_rows
    settings = {"input_size": info.input_size, "resize": info.resize, "skip_bad": bool(skip_bad),
                "chunk_rows": chunk_rows}
    key = hashlib.sha256(json.dumps([info.digest, _ids_digest(ids, labels), settings]).encode()).hexdigest()[:32]
    manifest = {"format": layout.FORMAT_NAME, "version": layout.FORMAT_VERSION, "status": "building",
                "rows": n, "dim": dim, "created": layout.now(), "gallery": dict(source, rows=n),
                "build": {"key": key, "settings": settings, "chunks": n_chunks, "world_size": world},
                "models": [dict(info.entry(), added=layout.now())],
                "search": {"exact": "faiss flat inner product over vectors.npy (IndexFlatIP's kernel)"}}
    start = time.time()
    if backend != "files":
        _build_into_collection(manifest, ids, net, source, n, dim, chunk_rows, n_chunks, batch, workers, device, amp,
                               skip_bad, progress, uri or out, token, collection or out, rank, log)
        seconds = time.time() - start
        return {"rows": n, "dim": dim, "model": info.tag, "seconds": seconds,
                "images_per_s": n / seconds if seconds > 0 else 0.0}
    with _RankZeroLock(out, rank) as lock:
        if rank == 0:
            _refuse_foreign_folder(out)
            os.makedirs(out, exist_ok=True)
            lock.acquire()
            if _prepare_folder(out, key, manifest) == "reuse":
                log(f"{out} already holds this gallery embedded by {info.tag}; nothing to do")
            layout.remove_stale_temps(out)
        barrier()
        finished = layout.read_manifest(out).get("status") == "ready"
        if not finished:
            os.makedirs(os.path.join(out, layout.BUILD), exist_ok=True)
            mine = [c for c in range(rank, n_chunks, world)
                    if not _shard_ok(_shard_path(out, c), min(chunk_rows, n - c * chunk_rows), dim)]
            _embed_chunks(out, net, ids, source["root"], mine, chunk_rows, batch, n, dim, workers, device, amp,
                          skip_bad, progress if progress is not None else rank == 0)
        barrier()
        if rank == 0 and not finished:
            _merge(out, manifest, ids, labels, n, dim, n_chunks, chunk_rows)
        barrier()
    seconds = time.time() - start
    return {"rows": n, "dim": dim, "model": info.tag, "seconds": seconds,
            "images_per_s": n / seconds if seconds > 0 else 0.0}


WRITE_PIECE = 1024  # rows a build upserts at a time into a collection, while the next rows are embedded


def _milvus_create(uri, token, collection, manifest):
    from bct.index.backends.milvus import MilvusBackend
    return MilvusBackend.create(uri, token, collection, manifest)


def _from_rank_zero(fn):
    """Rank 0 runs `fn` (it returns something picklable); every rank gets its result, or raises the
    one line it raised (so that no rank waits at a barrier for a rank that has given up)."""
    out = [None]
    if get_rank() == 0:
        try:
            out = [("ok", fn())]
        except BadInputError as e:
            out = [("bad", str(e))]
    if get_world_size() > 1:
        import torch.distributed as dist
        dist.broadcast_object_list(out, src=0)
    kind, value = out[0]
    if kind == "bad":
        raise AgreedError(value)
    return value


def on_every_rank(fn):
    """Every rank runs `fn`; when it raised BadInputError on any rank, every rank raises that one line
    (the first failing rank's, named when it is another rank), so that no rank waits at a collective
    for a rank that has given up."""
    try:
        out, err = fn(), None
    except BadInputError as e:
        out, err = None, str(e)
    errors = [err]
    if get_world_size() > 1:
        import torch.distributed as dist
        errors = [None] * get_world_size()
        dist.all_gather_object(errors, err)
    bad = [(r, e) for r, e in enumerate(errors) if e]
    if bad:
        r, e = bad[0]
        raise AgreedError(e if r == get_rank() else f"rank {r}: {e}")
    return out


def rank_chunks(missing: list, rank: int, world: int) -> list:
    """The chunks rank `rank` of `world` embeds, one per round (None where it has none that round):
    chunk missing[j * world + rank] in round j, so the ranks' rows are disjoint and cover `missing`."""
    rounds = (len(missing) + world - 1) // world
    return [missing[i] if i < len(missing) else None for i in range(rank, rounds * world, world)]


def _build_into_collection(manifest, ids, net, source, n, dim, chunk_rows, n_chunks, batch, workers, device, amp,
                           skip_bad, progress, uri, token, collection, rank, log) -> None:
    """Build into a Milvus collection. Rank 0 creates it (or finds the same unfinished build) and
    lists the chunks not recorded as written; the ranks share them out (rank_chunks). On a Milvus
    server every rank upserts its own rows; Milvus Lite serves one process at a time, so under
    torchrun the other ranks send their chunks to rank 0, which upserts them. Rank 0 marks the
    manifest ready last."""
    from bct.index.backends.milvus import is_server

    world = get_world_size()
    relay = world > 1 and not is_server(uri)  # Milvus Lite under torchrun: rank 0 writes for everyone
    made = {}

    def create():
        made["store"], how = _milvus_create(uri, token, collection, manifest)
        if how == "reuse":
            log(f"{made['store'].location} already holds this gallery embedded by the same model; nothing to do")
            return how, []
        done = made["store"].written("built", n_chunks) if how == "resume" else set()
        return how, [c for c in range(n_chunks) if c not in done]

    how, missing = _from_rank_zero(create)
    if how == "reuse":
        return
    # On a server every rank connects; a rank that cannot is one line on every rank.
    store = on_every_rank(lambda: made.get("store") or (None if relay else
                                                        _milvus_create(uri, token, collection, manifest)[0]))
    put = collection_writer(store, ids, chunk_rows, n)
    write = _relay_to_rank_zero(put, rank, world) if relay else put
    embed_and_write(net, image_dataset(source["root"], ids, net, skip_bad=skip_bad, list_name="the gallery list"),
                    ids, rank_chunks(missing, rank, world), chunk_rows, batch, n, dim, write, device, workers, amp,
                    piece=0 if relay else WRITE_PIECE)
    barrier()
    if rank == 0:
        store.set_manifest(dict(manifest, status="ready", built=layout.now()))
    barrier()


def collection_writer(store, ids, chunk_rows: int, n: int):
    """write(first row, vectors): upsert rows first.. of a build (nothing for None), then, after the
    last rows of a chunk, record the chunk as written (a rerun skips it)."""
    def write(lo, vecs):
        if lo is None:
            return
        store.write_rows(lo, ids[lo:lo + len(vecs)], vecs)
        end = lo + len(vecs)
        if end % chunk_rows == 0 or end == n:
            store.mark_written("built", (end - 1) // chunk_rows)
    return write


def _relay_to_rank_zero(put, rank, world):
    """write(first row, vectors) for Milvus Lite under torchrun: every rank calls it once a round
    with one whole chunk (None when it has none); rank 0 gathers the round's chunks and `put`s each."""
    import torch.distributed as dist

    def write(lo, vecs):
        got = [None] * world if rank == 0 else None
        dist.gather_object((lo, vecs), got, dst=0)
        for first, v in got or ():
            put(first, v)
    return write


def embed_and_write(net, dataset, ids, chunks, chunk_rows, batch, n, dim, write, device="cpu", workers=2, amp=True,
                    piece: int = 0) -> None:
    """One rank's part of a build into a collection: embed the rows of `chunks` (in order, one
    DataLoader for all of them; None: a round with no chunk) and call write(first row, vectors) for
    each whole chunk, or with `piece` for each `piece` rows in a row as soon as they are embedded,
    in a thread while the next rows are embedded (one write in flight); write(None, None) for each
    round with no chunk. A rerun re-embeds each chunk not entirely there and re-upserts its rows
    (upserts by row id: each row once, whatever a kill left)."""
    from concurrent.futures import ThreadPoolExecutor

    todo = [c for c in chunks if c is not None]
    batches, owner = [], []
    for c in todo:
        lo, hi = c * chunk_rows, min((c + 1) * chunk_rows, n)
        batches += [range(s, min(s + batch, hi)) for s in range(lo, hi, batch)]
        owner += [c] * len(range(lo, hi, batch))
    pool = ThreadPoolExecutor(1) if piece else None
    pending = None

    def send(lo, vecs):
        nonlocal pending
        if pool is None:
            write(lo, vecs)
            return
        if pending is not None:
            pending.result()
        pending = pool.submit(write, lo, vecs)

    try:
        buf = None
        for b, (index, feats, ok) in enumerate(embed_batches(net, dataset, batches, device, workers, amp) if batches
                                               else ()):
            c = owner[b]
            lo, hi = c * chunk_rows, min((c + 1) * chunk_rows, n)
            finite_rows(feats, "build: the model gave", lambda: [ids[int(i)] for i in index])
            if buf is None:
                buf, start, filled = np.zeros((hi - lo, dim), np.float32), lo, lo
            buf[index - lo] = feats
            filled = max(filled, int(index.max()) + 1)
            if filled == hi or (piece and filled - start >= piece):
                send(start, buf[start - lo:filled - lo].copy() if piece else buf)
                start = filled
            if filled == hi:
                buf = None
        for _ in range(len(chunks) - len(todo)):
            send(None, None)
        if pending is not None:
            pending.result()
    finally:
        if pool is not None:
            pool.shutdown(wait=True)


class _RankZeroLock:
    """Rank 0 holds the index's writer lock for the whole build."""

    def __init__(self, out: str, rank: int):
        self.lock = WriterLock(out, "build") if rank == 0 else None

    def acquire(self):
        self.lock.__enter__()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.lock is not None and self.lock.fd is not None:
            self.lock.__exit__(*exc)
        return False


def _embed_chunks(out, net, ids, root, chunks, chunk_rows, batch, n, dim, workers, device, amp, skip_bad, progress):
    """Embed the rows of `chunks` and write one shard file per chunk as soon as it is complete."""
    if not chunks:
        return
    dataset = image_dataset(root, ids, net, skip_bad=skip_bad, list_name="the gallery list")
    batches, owner = [], []
    for c in chunks:
        lo, hi = c * chunk_rows, min((c + 1) * chunk_rows, n)
        for s in range(lo, hi, batch):
            batches.append(range(s, min(s + batch, hi)))
            owner.append(c)
    buffers = {}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=sum(len(b) for b in batches), desc="build", unit="img", leave=False, disable=None,
                   dynamic_ncols=True)
    try:
        for b, (index, feats, ok) in enumerate(embed_batches(net, dataset, batches, device, workers, amp)):
            c = owner[b]
            finite_rows(feats, "build: the model gave", lambda: [ids[int(i)] for i in index])
            lo, hi = c * chunk_rows, min((c + 1) * chunk_rows, n)
            if c not in buffers:
                buffers[c] = [np.zeros((hi - lo, dim), np.float32), np.zeros(hi - lo, bool), 0]
            buf = buffers[c]
            buf[0][index - lo], buf[1][index - lo] = feats, ok
            buf[2] += len(index)
            if buf[2] == hi - lo:
                with atomic_path(_shard_path(out, c)) as tmp:
                    with open(tmp, "wb") as f:
                        np.savez(f, vectors=buf[0], ok=buf[1])
                del buffers[c]
            if bar is not None:
                bar.update(len(index))
    finally:
        if bar is not None:
            bar.close()


def _merge(out, manifest, ids, labels, n, dim, n_chunks, chunk_rows) -> None:
    """Rank 0: record the shards in the manifest, then write vectors, tags, ids, labels and state; the
    manifest's status 'ready', written last, marks the index complete."""
    missing = [c for c in range(n_chunks)
               if not _shard_ok(_shard_path(out, c), min(chunk_rows, n - c * chunk_rows), dim)]
    if missing:
        raise BadInputError(f"{out}: shards {missing[:5]} of the build are missing after every rank finished; "
                            f"rerun the build to embed them")
    manifest = dict(manifest, build=dict(manifest["build"], shards=[os.path.basename(_shard_path(out, c))
                                                                   for c in range(n_chunks)]))
    write_manifest(out, manifest)
    vec_path = os.path.join(out, layout.VECTORS)
    bad = 0
    with atomic_path(vec_path) as tmp:
        vectors = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
        reserve(tmp, vec_path)
        for c in range(n_chunks):
            with np.load(_shard_path(out, c)) as z:
                vectors[c * chunk_rows:c * chunk_rows + len(z["ok"])] = z["vectors"]
                bad += int((~z["ok"]).sum())
        vectors.flush()
        del vectors
    manifest["build"]["unreadable_images"] = bad
    _finish(out, manifest, ids, labels, n)
    shutil.rmtree(os.path.join(out, layout.BUILD), ignore_errors=True)


def _finish(out, manifest, ids, labels, n) -> None:
    """Everything but the vectors: tags (all the first model's), ids, labels, state, the lock files,
    and last the manifest marked ready."""
    create_array(os.path.join(out, layout.TAGS), (n,), layout.TAG_DTYPE, fill=0)
    write_ids(out, ids)
    if labels is not None:
        with atomic_path(os.path.join(out, layout.LABELS)) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(labels, dtype=np.int64))
    write_state(out, {"applied": 0, "applying": None, "counts": {"0": n}})
    for name in (layout.ROWS_LOCK, layout.ROWS_LOCK + ".intent"):
        open(os.path.join(out, name), "a").close()
    manifest.update(status="ready", built=layout.now())
    write_manifest(out, manifest)


def build_from_vectors(out: str, vectors, ids, model, *, name: str = "", labels=None, root: str = "",
                       block_rows: int = 1 << 16, backend: str = "files", uri: str = "", token: str = "",
                       collection: str = "") -> dict:
    """An index folder from vectors already computed (N, D) float32 by `model` (checkpoint path or
    bct.load_model model, recorded as the rows' model), e.g. embeddings exported from another store.
    Rows are L2-normalised as they are copied. `ids`: N distinct image ids (paths relative to
    `root` if the index is to be backfilled)."""
    n, dim = vectors.shape
    ids = [str(i) for i in ids]
    if len(ids) != n:
        raise BadInputError(f"build: {len(ids)} ids for {n} vectors")
    if len(set(ids)) != n:
        raise BadInputError("build: the ids must be distinct")
    bad = [i for i in ids[:1000] if "\n" in i]
    if bad:
        raise BadInputError(f"build: id {bad[0]!r} holds a line break")
    for s in range(0, n, block_rows):  # before anything is written
        block = np.asarray(vectors[s:s + block_rows], dtype=np.float32)
        finite_rows(block, "build: the vectors hold", ids[s:s + block_rows])
        zero = np.flatnonzero(~block.any(axis=1))
        if zero.size:
            raise BadInputError(f"build: the vector of {ids[s + int(zero[0])]!r} is all zeros ({zero.size} such rows in "
                                f"this block); it has no direction and could never be found: nothing was written")
    info = describe(model, name)
    info.code = 0
    if info.emb_dim != dim:
        raise BadInputError(f"build: the vectors have {dim} dimensions, model {info.tag} embeds in {info.emb_dim}")
    gallery = {"kind": "vectors", "root": os.path.abspath(root) if root else "", "rows": n}
    manifest = {"format": layout.FORMAT_NAME, "version": layout.FORMAT_VERSION, "status": "building", "rows": n,
                "dim": dim, "created": layout.now(), "gallery": gallery,
                "build": {"key": "vectors-" + _ids_digest(ids, labels)[:24], "settings": {}, "chunks": 0,
                          "world_size": 1},
                "models": [dict(info.entry(), added=layout.now())],
                "search": {"exact": "faiss flat inner product over vectors.npy (IndexFlatIP's kernel)"}}
    if backend != "files":
        store, how = _milvus_create(uri or out, token, collection or out, manifest)
        if how == "reuse":
            return {"rows": n, "dim": dim, "model": info.tag, "reused": True}
        for s in range(0, n, block_rows):
            store.write_rows(s, ids[s:s + block_rows], _normalised(vectors[s:s + block_rows]))
        store.set_manifest(dict(manifest, status="ready", built=layout.now()))
        return {"rows": n, "dim": dim, "model": info.tag, "reused": False}
    _refuse_foreign_folder(out)
    with _MakeAndLock(out):
        if _prepare_folder(out, manifest["build"]["key"], manifest) == "reuse":
            return {"rows": n, "dim": dim, "model": info.tag, "reused": True}
        vec_path = os.path.join(out, layout.VECTORS)
        with atomic_path(vec_path) as tmp:
            dst = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
            reserve(tmp, vec_path)
            for s in range(0, n, block_rows):
                dst[s:s + block_rows] = _normalised(vectors[s:s + block_rows])
            dst.flush()
            del dst
        _finish(out, manifest, ids, labels, n)
    return {"rows": n, "dim": dim, "model": info.tag, "reused": False}


def _normalised(block) -> np.ndarray:
    block = np.asarray(block, dtype=np.float32)
    norms = np.linalg.norm(block, axis=1, keepdims=True)
    return block / np.where(norms > 0, norms, 1)


class _MakeAndLock(WriterLock):
    def __init__(self, out: str):
        os.makedirs(out, exist_ok=True)
        super().__init__(out, "build")


def copy_index(src, backend: str = "milvus", uri: str = "", token: str = "", collection: str = "",
               block_rows: int = 1 << 14) -> dict:
    """Copy an open index `src` (its rows, models table and lineage, current vectors and codes, and
    for each row the newest kept vector of another model: the rollback copy) into a new collection.
    A rerun after a kill continues (the copy's key is the source's build key)."""
    if backend != "milvus":
        raise BadInputError(f"copy: --backend {backend!r}; copies go into --backend milvus")
    manifest = dict(src.manifest, status="building")
    manifest["build"] = dict(manifest.get("build", {}), copied_from=src.path)
    name = collection or os.path.basename(src.path.rstrip("/"))
    store, how = _milvus_create(uri, token, name, manifest)
    if how != "reuse":
        codes = sorted(m.code for m in src.models())
        done = store.written(f"copied{block_rows}", (src.n + block_rows - 1) // block_rows) if how == "resume" else set()
        for lo in range(0, src.n, block_rows):
            rows = np.arange(lo, min(src.n, lo + block_rows))
            if lo // block_rows in done:
                continue
            tags = np.asarray(src.store.tags(rows))
            prev = np.full(len(rows), -1, np.int16)
            old = np.zeros((len(rows), src.dim), np.float32)
            for code in codes:  # newest model last: its kept vector wins
                have, vecs = src.store.stored(code, rows)
                have &= tags != code
                prev[have], old[have] = code, vecs[have]
            store.write_rows(lo, src.ids(rows), src.store.vectors(rows), tags=tags, prev=prev, old=old)
            store.mark_written(f"copied{block_rows}", lo // block_rows)
        store.set_manifest(dict(manifest, status="ready", built=layout.now()))
    return {"rows": src.n, "models": len(src.models()), "location": store.location}
