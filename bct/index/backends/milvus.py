"""The Milvus backend: a gallery index as one Milvus collection (docs/deploying.md, "Your gallery in
Milvus"). The same client code runs on Milvus Lite (a local ``.db`` path as the URI, one process at a
time) and on a Milvus server (``http(s)://host:port`` and a token).

Collection ``NAME`` (one entity per gallery row):

    row INT64 (primary key) | key VARCHAR (image id) | model INT16 (code of the serving model)
    | vec FLOAT_VECTOR (the serving vector, searched) | prev INT16 (code of the kept vector, -1: none)
    | old FLOAT_VECTOR (the vector the row served before: the rollback copy)

Collection ``NAME__bct`` (small, one entity per key): the manifest (format, rows, dim, gallery, the
models table with each model's lineage), the writer's lease, the backfill progress and saved orders,
the chunks of an unfinished build or copy already written, each value stored as JSON with its
sha256, so a damaged one is named instead of misread.

A commit is one upsert of whole entities (the new vector, its model code and the replaced vector in
the same entity), so a search sees each row entirely before or after it; upserts by primary key are
idempotent and the work left is read from the rows' model codes, so a backfill killed at any moment
and rerun leaves every row exactly once with the right vector and code. Every read uses consistency
level Strong: a search issued after a commit returned sees it (Bounded or Eventually could serve
rows from before the last commits, and a resumed backfill could then redo or skip rows).

One rollback copy per row (the vector it served before), unlike the files backend's one store per
model: a rollback goes back one model, and a backfill of a rolled-back model swaps its vectors back.
"""
import base64
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from contextlib import contextmanager

import numpy as np

from bct.index import layout
from bct.index.backend import Backend
from bct.utils.errors import BadInputError

META_SUFFIX = "__bct"
PAGE = 8192           # rows per query / get request
WRITE = 2048          # rows per upsert request
QUERY_BATCH = 64      # queries per search request
PLAN_CHUNK = 8192     # plan entries per meta entity (base64 int32 stays under the VARCHAR limit)
LEASE_SECONDS = 120   # a lease whose holder has not committed for this long (other host) is stale
INSTALL = 'the Milvus backend needs pymilvus and milvus-lite: pip install ".[milvus]"'


def _client_module():
    try:
        import pymilvus
    except ImportError:
        raise BadInputError(INSTALL) from None
    return pymilvus


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:"))


def connect(uri: str, token: str = ""):
    """A MilvusClient, or one line: unreachable server, refused token, a Lite file in use."""
    pymilvus = _client_module()
    if not uri:
        raise BadInputError("--backend milvus needs --uri (a local .db file for Milvus Lite, or http(s)://host:port)")
    if not is_server(uri):
        if not uri.endswith(".db"):
            raise BadInputError(f"--uri {uri}: a Milvus Lite file must end in .db (or give http(s)://host:port)")
        if not os.path.isdir(os.path.dirname(os.path.abspath(uri))):
            raise BadInputError(f"--uri {uri}: folder {os.path.dirname(os.path.abspath(uri))} does not exist")
        try:
            import milvus_lite  # noqa: F401
        except ImportError:
            raise BadInputError(INSTALL) from None
    quiet = logging.getLogger("milvus_lite")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        client = pymilvus.MilvusClient(uri=uri, token=token, timeout=10)
        client.list_collections()
    except Exception as e:  # pymilvus raises its own exception kinds, several per cause
        raise BadInputError(_refusal(uri, token, e)) from None
    finally:
        quiet.setLevel(level)
    return client


# What a Milvus server answers a missing or wrong token with: gRPC status UNAUTHENTICATED (or
# PERMISSION_DENIED) from its authentication interceptor, which pymilvus wraps in a MilvusException
# whose own message ("Fail connecting to server on HOST:PORT, illegal connection params or server
# unavailable") is the same as for a server that is not there: the cause tells them apart. Older
# servers answer with a status (code 1400 "not authenticated", or a message "auth check failure
# ..."); a user without the privilege gets PERMISSION_DENIED or 1401 "privilege not permitted".
AUTH_CODES = (1400,)
DENIED_CODE = 1401
AUTH_WORDS = ("auth check failure", "not authenticated", "unauthenticated", "authorization")


def _refusal(uri: str, token: str, error: BaseException) -> str:
    """The one line for a connection that failed: a rejected token, or a server not reached."""
    if not is_server(uri):
        return (f"--uri {uri}: Milvus Lite cannot open the file ({_short(error)}); Milvus Lite serves one process "
                f"at a time: stop the other process that has it open")
    chain, e = [], error
    while e is not None and len(chain) < 8:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for e in chain:
        code = e.code() if callable(getattr(e, "code", None)) else getattr(e, "code", None)
        name = getattr(code, "name", "")
        if name == "PERMISSION_DENIED" or code == DENIED_CODE:
            return (f"--uri {uri}: the Milvus server accepted the token but denies its user this operation "
                    f"(permission denied); grant that user's role the privileges on the collection, or give "
                    f"another --token")
        if name == "UNAUTHENTICATED" or code in AUTH_CODES or any(w in _short(e).lower() for w in AUTH_WORDS):
            if not token:
                return (f"--uri {uri}: the Milvus server asks for a token and none was given; give --token "
                        f"user:password (or an API key) of a user of that server")
            return (f"--uri {uri}: the Milvus server rejected the token (authentication failed); check --token: "
                    f"user:password of a user of that server, or an API key it issued, and that the user exists")
    return (f"--uri {uri}: cannot reach a Milvus server there ({_short(chain[-1])}); check the host and port, and "
            f"that Milvus is running and reachable from here")


def _short(error: BaseException) -> str:
    """An exception's text on one line, at most 160 characters (a gRPC error: its details)."""
    details = getattr(error, "details", None)
    text = details() if callable(details) else getattr(error, "message", "") or str(error)
    return " ".join(str(text).split())[:160]


def _sealed(value) -> str:
    body = json.dumps(value, sort_keys=True)
    return json.dumps({"sha256": hashlib.sha256(body.encode()).hexdigest(), "body": body})


def _unseal(text: str, where: str):
    try:
        outer = json.loads(text)
        body = outer["body"]
        ok = hashlib.sha256(body.encode()).hexdigest() == outer["sha256"]
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise BadInputError(f"{where} is damaged (its checksum does not match); restore the collection "
                            f"{where.split(' ')[0]} from a backup or copy the index again")
    return json.loads(body)


class MilvusBackend(Backend):
    kind = "milvus"

    def __init__(self, client, uri: str, collection: str):
        self.client, self.uri, self.collection = client, uri, collection
        self.meta_collection = collection + META_SUFFIX
        self.location = f"{uri}#{collection}"
        self.path = self.location
        self._lease = None
        self._loaded = False

    # -- opening and creating ------------------------------------------------------------------------
    @staticmethod
    def _name(uri: str, collection: str) -> str:
        name = collection or os.path.splitext(os.path.basename(uri.rstrip("/")))[0] or "gallery"
        name = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
        if not name[0].isalpha() and name[0] != "_":
            name = "g_" + name
        return name

    @classmethod
    def open(cls, uri: str, token: str = "", collection: str = "") -> "MilvusBackend":
        client = connect(uri, token)
        self = cls(client, uri, cls._name(uri, collection))
        manifest = self.manifest()
        if manifest.get("status") != "ready":
            raise BadInputError(f"index {self.location} is not finished (its build was interrupted); rerun the same "
                                f"`python -m bct.tools.index build` command to complete it")
        self.n, self.dim = int(manifest["rows"]), int(manifest["dim"])
        return self

    @classmethod
    def create(cls, uri: str, token: str, collection: str, manifest: dict) -> tuple:
        """(backend, "new" | "resume" | "reuse"): a new collection for `manifest`, or the one that an
        interrupted or finished build of the same key left; one line for a collection of anything else."""
        client = connect(uri, token)
        self = cls(client, uri, cls._name(uri, collection))
        self.n, self.dim = int(manifest["rows"]), int(manifest["dim"])
        have = set(client.list_collections())
        if self.meta_collection in have:
            self._create(self.meta_collection, *self._schema(0))  # a creation killed half-way is finished
            if self.collection not in have and not self._get_meta(["manifest"]):
                have.discard(self.meta_collection)  # killed before its first write: nobody's yet, start again
        if self.collection in have or self.meta_collection in have:
            old = self.manifest()
            if old.get("build", {}).get("key") != manifest["build"]["key"]:
                what = "a finished index" if old.get("status") == "ready" else "an unfinished build"
                raise BadInputError(f"collection {self.collection} at {uri} already holds {what} of another gallery, "
                                    f"model, embedding size or setting; choose another --collection (or drop it)")
            if old.get("status") == "ready":
                return self, "reuse"
            self._create(self.collection, *self._schema(self.dim))  # a build killed before it made it
            return self, "resume"
        self._create(self.meta_collection, *self._schema(0))
        self._put("manifest", manifest)  # first: a collection without it is nobody's
        self._create(self.collection, *self._schema(self.dim))
        self._loaded = True
        return self, "new"

    def _schema(self, dim: int) -> tuple:
        """(schema, index params) of the rows collection (dim: its vectors' size), or of the small
        one (dim 0)."""
        DataType = _client_module().DataType
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        params = self.client.prepare_index_params()
        if not dim:
            schema.add_field("name", DataType.VARCHAR, is_primary=True, max_length=256)
            schema.add_field("value", DataType.VARCHAR, max_length=65535)
            schema.add_field("v", DataType.FLOAT_VECTOR, dim=2)
            params.add_index("v", index_type="FLAT", metric_type="L2")
            return schema, params
        schema.add_field("row", DataType.INT64, is_primary=True)
        schema.add_field("key", DataType.VARCHAR, max_length=4096)
        schema.add_field("model", DataType.INT16)
        schema.add_field("prev", DataType.INT16)
        schema.add_field("vec", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("old", DataType.FLOAT_VECTOR, dim=dim)
        params.add_index("vec", index_type="FLAT", metric_type="IP")
        params.add_index("old", index_type="FLAT", metric_type="IP")
        return schema, params

    def _create(self, name: str, schema, params) -> None:
        """The collection with its indexes, loaded; each step only if it is not done yet (a build
        killed between them finishes them). The indexes are created without pymilvus's wait for them
        to be built (it polls every 0.5 s, 1.5 s a build for three indexes): an empty collection has
        nothing to build, and rows added later are indexed as they come."""
        if not self.client.has_collection(name):
            self.client.create_collection(name, schema=schema, consistency_level="Strong")
        if not self.client.list_indexes(name):
            self.client.create_index(name, params, sync=False)
        self.client.load_collection(name)

    # -- the small collection --------------------------------------------------------------------------
    def _get_meta(self, names: list) -> dict:
        if not names:
            return {}
        got = self.client.get(self.meta_collection, ids=list(names), output_fields=["value"],
                              consistency_level="Strong")
        return {g["name"]: g["value"] for g in got}

    def _get(self, name: str, default=None):
        got = self._get_meta([name]).get(name)
        return default if got is None else _unseal(got, f"{self.meta_collection} entry {name!r}")

    def _put(self, name: str, value) -> None:
        self.client.upsert(self.meta_collection, [{"name": name, "value": _sealed(value), "v": [0.0, 0.0]}])

    def manifest(self) -> dict:
        if not self._loaded:
            have = set(self.client.list_collections())
            if self.meta_collection not in have:
                what = "holds a collection of that name that bct did not make" if self.collection in have else \
                    "has no such collection"
                raise BadInputError(f"Milvus at {self.uri} {what}: {self.collection} is not a bct index (build one "
                                    f"with `python -m bct.tools.index build --backend milvus`)")
            for name in (self.meta_collection, self.collection):
                if name in have:
                    self.client.load_collection(name)
            self._loaded = True
        manifest = self._get("manifest")
        if not isinstance(manifest, dict) or manifest.get("format") != layout.FORMAT_NAME:
            raise BadInputError(f"collection {self.collection} at {self.uri} is not a bct index")
        if manifest.get("version") != layout.FORMAT_VERSION:
            raise BadInputError(f"collection {self.collection}: index format version {manifest.get('version')!r}, "
                                f"but this bct reads version {layout.FORMAT_VERSION}")
        return manifest

    def set_manifest(self, manifest: dict) -> None:
        self._put("manifest", manifest)

    def add_model(self, entry: dict) -> None:
        manifest = self.manifest()
        manifest["models"].append(entry)
        self._put("manifest", manifest)

    # -- rows --------------------------------------------------------------------------------------------
    def _fetch(self, rows, fields: list) -> dict:
        """{field: array in the order of `rows`} for the given rows."""
        rows = np.asarray(rows, dtype=np.int64).ravel()
        out = {f: [] for f in fields}
        for s in range(0, len(rows), PAGE):
            part = rows[s:s + PAGE]
            got = self.client.get(self.collection, ids=part.tolist(), output_fields=fields,
                                  consistency_level="Strong")
            by_row = {int(g["row"]): g for g in got}
            if len(by_row) != len(np.unique(part)):
                missing = sorted(set(part.tolist()) - set(by_row))[:5]
                raise BadInputError(f"collection {self.collection}: rows {missing} are missing; the index is damaged "
                                    f"(copy or build it again)")
            for f in fields:
                out[f].extend(by_row[r][f] for r in part.tolist())
        return {f: self._column(f, v) for f, v in out.items()}

    def _column(self, field: str, values: list):
        if field in ("vec", "old"):
            return np.asarray(values, dtype=np.float32).reshape(-1, self.dim)
        if field in ("model", "prev"):
            return np.asarray(values, dtype=np.int16)
        return values

    def ids(self, rows) -> list:
        return list(self._fetch(rows, ["key"])["key"])

    def tags(self, rows=None) -> np.ndarray:
        return self._fetch(np.arange(self.n) if rows is None else rows, ["model"])["model"]

    def vectors(self, rows=None) -> np.ndarray:
        return self._fetch(np.arange(self.n) if rows is None else rows, ["vec"])["vec"]

    def stored(self, code: int, rows, with_vectors: bool = True) -> tuple:
        got = self._fetch(rows, ["prev", "old"] if with_vectors else ["prev"])
        have = got["prev"] == code
        return have, (got["old"] if with_vectors else None)

    def _count(self, expr: str) -> int:
        got = self.client.query(self.collection, filter=expr, output_fields=["count(*)"], consistency_level="Strong")
        return int(got[0]["count(*)"]) if got else 0

    def counts(self) -> dict:
        """Rows per model: the newest model's by subtraction from the number of rows (an unfiltered
        count is read from the segments; a filtered one scans every row on Milvus Lite)."""
        codes = [int(m["code"]) for m in self.manifest()["models"]]
        out = {c: self._count(f"model == {c}") for c in codes[:-1]}
        out[codes[-1]] = self._count("") - sum(out.values())
        return {c: k for c, k in out.items() if k}

    def stored_rows(self, code: int) -> int:
        return self._count(f"prev == {int(code)} and model != {int(code)}")

    def applied_steps(self) -> int:
        return int((self._get("progress") or {}).get("steps", 0))

    # -- search --------------------------------------------------------------------------------------------
    def search(self, queries, k, codes=None, ann: str = "", nprobe: int = 16):
        if ann:
            raise BadInputError(f"--ann {ann}: the Milvus backend searches the collection's own vector index "
                                f"(FLAT: exact); build an IVF or HNSW index on its field `vec` in Milvus instead")
        counts = self.counts()
        k = min(k, self.n)
        expr = "" if codes is None else f"model in [{', '.join(str(int(c)) for c in codes)}]"
        scores = np.full((len(queries), k), -np.inf, np.float32)
        rows = np.full((len(queries), k), np.iinfo(np.int64).max, np.int64)
        tags = np.full((len(queries), k), -1, np.int16)
        for s in range(0, len(queries), QUERY_BATCH):
            block = queries[s:s + QUERY_BATCH]
            hits = self.client.search(self.collection, data=[q.tolist() for q in block], anns_field="vec",
                                      limit=k, filter=expr, output_fields=["model"],
                                      search_params={"metric_type": "IP"}, consistency_level="Strong")
            for i, hit in enumerate(hits):
                got = len(hit)
                scores[s + i, :got] = [h["distance"] for h in hit]
                rows[s + i, :got] = [h["row"] if "row" in h else h["id"] for h in hit]
                tags[s + i, :got] = [h["entity"]["model"] for h in hit]
        order = np.lexsort((rows, -scores), axis=-1)
        scores, rows = np.take_along_axis(scores, order, -1), np.take_along_axis(rows, order, -1)
        tags = np.take_along_axis(tags, order, -1)
        if codes is not None:
            keep = int((rows != np.iinfo(np.int64).max).all(0).sum())
            scores, rows, tags = scores[:, :keep], rows[:, :keep], tags[:, :keep]
        for c in np.unique(tags[tags >= 0]).tolist():  # a model that began serving after the counts were read
            counts.setdefault(int(c), 1)
        return scores, rows, tags, counts

    # -- changes --------------------------------------------------------------------------------------------
    @contextmanager
    def writer(self, action: str):
        lease = {"action": action, "pid": os.getpid(), "host": socket.gethostname(),
                 "started": time.strftime("%Y-%m-%d %H:%M:%S"), "token": uuid.uuid4().hex, "beat": time.time()}
        held = self._get("lease")
        if held and not self._stale(held):
            raise BadInputError(
                f"index {self.location} is being changed by another process ({held.get('action', '?')}, pid "
                f"{held.get('pid', '?')} on {held.get('host', '?')}, started {held.get('started', '?')}); one "
                f"{action} at a time: wait for it to finish or stop it (a rerun continues where it stopped)")
        self._put("lease", lease)
        if (self._get("lease") or {}).get("token") != lease["token"]:
            raise BadInputError(f"index {self.location}: another writer took it at the same moment; one {action} at "
                                f"a time")
        self._lease = lease
        try:
            yield self
        finally:
            self._lease = None
            if (self._get("lease") or {}).get("token") == lease["token"]:
                self.client.delete(self.meta_collection, ids=["lease"])

    @staticmethod
    def _stale(held: dict) -> bool:
        if held.get("host") == socket.gethostname():
            if held.get("pid") == os.getpid():
                return False  # another writer of this very process
            try:
                os.kill(int(held["pid"]), 0)
            except (ProcessLookupError, ValueError, KeyError, TypeError):
                return True
            except PermissionError:
                return False
            return False
        return time.time() - float(held.get("beat", 0)) > LEASE_SECONDS

    def commit(self, rows, target, vectors) -> None:
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        for s in range(0, len(rows), WRITE):
            part = rows[s:s + WRITE]
            cur = self._fetch(part, ["key", "model", "vec"])
            self.client.upsert(self.collection, [
                {"row": int(r), "key": cur["key"][i], "model": int(target), "vec": vectors[s + i],
                 "prev": int(cur["model"][i]), "old": cur["vec"][i]} for i, r in enumerate(part.tolist())])
        progress = self._get("progress") or {"steps": 0}
        progress.update(steps=int(progress.get("steps", 0)) + 1, model=int(target), at=time.time())
        self._put("progress", progress)
        if self._lease is not None:
            self._lease["beat"] = time.time()
            self._put("lease", self._lease)

    def write_rows(self, lo: int, keys: list, vectors, tags=None, prev=None, old=None) -> None:
        """Rows lo.. of a build or a copy (one upsert per WRITE rows)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n = len(keys)
        zero = np.zeros(self.dim, np.float32)
        for s in range(0, n, WRITE):
            self.client.upsert(self.collection, [
                {"row": lo + i, "key": keys[i], "model": 0 if tags is None else int(tags[i]), "vec": vectors[i],
                 "prev": -1 if prev is None else int(prev[i]), "old": zero if old is None else old[i]}
                for i in range(s, min(n, s + WRITE))])

    def mark_written(self, what: str, part: int) -> None:
        """Record that part `part` of a build or a copy is entirely upserted (called after its rows:
        a kill between the two only makes a rerun upsert that part again)."""
        self._put(f"{what}:{int(part)}", True)

    def written(self, what: str, parts: int) -> set:
        """The parts of `parts` recorded by mark_written: a rerun skips them. One read of the small
        collection (a count of rows per part would scan the whole collection once per part)."""
        names = [f"{what}:{i}" for i in range(parts)]
        done = set()
        for s in range(0, len(names), PAGE):
            done.update(int(name.rsplit(":", 1)[1]) for name in self._get_meta(names[s:s + PAGE]))
        return done

    def prune(self, code: int):
        expr = f"prev == {int(code)}"
        freed = 0
        while True:
            got = self.client.query(self.collection, filter=expr, output_fields=["row"], limit=PAGE,
                                    consistency_level="Strong")
            if not got:
                break
            rows = np.asarray([g["row"] for g in got], np.int64)
            cur = self._fetch(rows, ["key", "model", "vec"])
            zero = np.zeros(self.dim, np.float32)
            self.client.upsert(self.collection, [
                {"row": int(r), "key": cur["key"][i], "model": int(cur["model"][i]), "vec": cur["vec"][i],
                 "prev": -1, "old": zero} for i, r in enumerate(rows.tolist())])
            freed += len(rows) * self.dim * 4
        return freed or None

    def _load_row_array(self, name: str, n: int, dtype):
        """A per-row array kept by _save_row_array under `name`, or None (absent, partial, other size)."""
        head = self._get(name)
        if not head or head.get("rows") != n:
            return None
        names = [f"{name}:{i}" for i in range(head["chunks"])]
        got = self._get_meta(names)
        if len(got) != len(names):
            return None
        parts = [np.frombuffer(base64.b64decode(_unseal(got[nm], f"{self.meta_collection} entry {nm!r}")), dtype)
                 for nm in names]
        arr = np.concatenate(parts) if parts else np.zeros(0, dtype)
        return arr if arr.shape == (n,) else None

    def _save_row_array(self, name: str, arr) -> None:
        """4-byte values in chunks of PLAN_CHUNK entries, then the head that says how many: an array
        written for the first time is found whole or not at all (a rewrite changes chunks in place)."""
        chunks = [arr[s:s + PLAN_CHUNK] for s in range(0, len(arr), PLAN_CHUNK)]
        for i, c in enumerate(chunks):
            self._put(f"{name}:{i}", base64.b64encode(c.tobytes()).decode())
        self._put(name, {"rows": int(len(arr)), "chunks": len(chunks)})  # last: the array is whole

    def load_plan(self, key: str, n: int):
        plan = self._load_row_array(f"plan:{key}", n, np.int32)
        return None if plan is None else plan.astype(np.int64)

    def save_plan(self, key: str, plan) -> None:
        self._save_row_array(f"plan:{key}", np.asarray(plan, dtype=np.int32))

    def load_values(self, key: str, n: int):
        return self._load_row_array(f"values:{key}", n, np.float32)

    def save_values(self, key: str, values) -> None:
        self._save_row_array(f"values:{key}", np.ascontiguousarray(values, dtype=np.float32))

    def close(self) -> None:
        """Close the client; for Milvus Lite also stop this process's engine of the file, so that
        another process may open it (every client of this process on that file stops with it)."""
        try:
            self.client.close()
        except Exception:  # already closed
            pass
        if not is_server(self.uri):
            from milvus_lite.server_manager import server_manager_instance
            server_manager_instance.release_server(self.uri)

