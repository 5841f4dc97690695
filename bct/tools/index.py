"""A gallery index whose rows know which model embedded them (docs/deploying.md).

    python -m bct.tools.index build    --model OLD.pth (--list LIST [--root DIR] | --folder DIR) --out INDEX
    python -m bct.tools.index search   INDEX --model NEW.pth (--images a.jpg,b.jpg | --list L | --folder D |
                                             --vectors Q.npy) [--k 10] [--out R.csv|R.json] [--page DIR]
    python -m bct.tools.index transform INDEX --transformation DIR/transformation.pth --model NEW.pth
    python -m bct.tools.index backfill INDEX --model NEW.pth [--order random|distinct|uncertainty]
                                             [--rows N | --fraction F]
    python -m bct.tools.index status   INDEX
    python -m bct.tools.index rollback INDEX [--to MODEL]
    python -m bct.tools.index prune    INDEX [--model MODEL]
    python -m bct.tools.index ann      INDEX [--kind ivf|hnsw]
    python -m bct.tools.index copy     INDEX --backend milvus --uri PATH.db|http(s)://HOST:PORT [--collection NAME]

Every command takes --backend milvus --uri ... [--token ...] [--collection NAME] to work on a Milvus
collection instead of a folder (INDEX / --out then names the collection unless --collection does).

`transform` (FastFill) serves a trained transformation's estimate h(old vector) on every old-model
row, reading no image, and keeps each row's uncertainty; a backfill with the new model then goes
most uncertain first unless --order says otherwise. A BT2 model (a wider embedding) searches and
backfills an index of its compatible size with the compatible part of its embeddings.

`build` runs under torchrun too (each rank embeds its own shards). Bad input exits 2 with one line.
"""
import argparse
import json
import os
import sys

from bct.tools import common
from bct.tools.common import run
from bct.utils.errors import BadInputError

PROG = "python -m bct.tools.index"


def _loader_args(p, workers: int = 2) -> None:
    p.add_argument("--batch-size", type=common.count, default=64, help="images per batch (default 64)")
    p.add_argument("--workers", type=common.nonneg_int, default=workers, help=f"DataLoader workers (default {workers})")
    p.add_argument("--device", default="auto", type=common.device, help="auto (a GPU if there is one), cpu or cuda")
    p.add_argument("--no-amp", action="store_true", help="no float16 autocast on CUDA (off on the CPU anyway)")
    p.add_argument("--input-size", type=common.count, default=0,
                   help="override the model's input size (default: what its checkpoint says)")
    p.add_argument("--resize", choices=("squash", "aspect"), default="",
                   help="override the model's resize mode (default: what its checkpoint says)")


def _backend_args(p) -> None:
    p.add_argument("--backend", choices=("files", "milvus"), default="files",
                   help="where the index lives: a folder (files, default) or a Milvus collection (milvus)")
    p.add_argument("--uri", default="", type=common.text, help="Milvus: a local .db file (Milvus Lite) or http(s)://host:port")
    p.add_argument("--token", default="", type=common.text, help="Milvus: the token (user:password or an API key)")
    p.add_argument("--collection", default="", type=common.text, help="Milvus: the collection (default: INDEX / --out's base name)")


def _where(args) -> dict:
    if args.backend == "files":
        for flag in ("uri", "token", "collection"):
            if getattr(args, flag):
                raise BadInputError(f"--{flag} is for --backend milvus; the files backend takes a folder")
        return {}
    return {"backend": args.backend, "uri": args.uri, "token": args.token, "collection": args.collection}


def build_parser():
    p = common.parser(__file__, __doc__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("build", prog=f"{PROG} build", help="embed a gallery into a new index folder")
    b.add_argument("--model", required=True, type=common.existing_file, help="checkpoint that embeds the gallery")
    b.add_argument("--list", default="", type=common.existing_file, help="image list (`relative/path label` lines)")
    b.add_argument("--root", default="", type=common.existing_dir, help="folder the list's paths are relative to (default: the list's folder)")
    b.add_argument("--folder", default="", type=common.existing_dir, help="a folder of images (instead of --list)")
    b.add_argument("--out", required=True, type=common.output_dir, help="the index folder to write")
    b.add_argument("--name", default="", type=common.text, help="short name of the model (default: from its file name)")
    b.add_argument("--chunk-rows", type=common.count, default=0,
                   help="rows per shard (default 64 batches): the unit a killed build resumes from")
    b.add_argument("--skip-bad", action="store_true", help="give unreadable images a zero vector instead of failing")
    b.add_argument("--ann", choices=("", "ivf", "hnsw"), default="", help="also build an approximate index")
    b.add_argument("--vectors", type=common.existing_file, default=None,
                   help="vectors (N, D) .npy (or .npz of one array) computed by --model, row i for line i of --list (no embedding)")
    _loader_args(b)
    _backend_args(b)

    s = sub.add_parser("search", prog=f"{PROG} search", help="top-k rows of query images or vectors")
    s.add_argument("index", type=common.text, help="index folder (--backend milvus: the collection)")
    s.add_argument("--model", default="", type=common.text, help="checkpoint that embeds the queries (or made --vectors)")
    s.add_argument("--images", default="", type=common.text, help="comma-separated query image paths")
    s.add_argument("--list", default="", type=common.existing_file, help="query image list (`relative/path [label]` lines, one path a line)")
    s.add_argument("--root", default="", type=common.existing_dir, help="folder that --images / --list paths are relative to")
    s.add_argument("--folder", default="", type=common.existing_dir, help="a folder of query images")
    s.add_argument("--vectors", default="", type=common.existing_file, help="query vectors (n, D) in a .npy file (or an .npz of one array)")
    s.add_argument("--k", type=common.count, default=10, help="results per query (default 10)")
    s.add_argument("--out", default="", type=common.output_file, help="write the results to this .csv or .json file (default: print)")
    s.add_argument("--page", default="", type=common.output_dir,
                   help="also write the results as a report page (DIR/index.html: each hit's image and model tag)")
    s.add_argument("--force", action="store_true", help="search even with a model not known to be compatible")
    s.add_argument("--ann", default="", choices=("", "ivf", "hnsw"), help="search through the approximate index of this kind (ivf, hnsw)")
    s.add_argument("--nprobe", type=common.count, default=16, help="IVF lists visited (HNSW: efSearch / 16)")
    _loader_args(s, workers=0)
    _backend_args(s)

    f = sub.add_parser("backfill", prog=f"{PROG} backfill", help="re-embed rows with a new model, in place")
    f.add_argument("index", type=common.text, help="index folder (--backend milvus: the collection)")
    f.add_argument("--model", required=True, type=common.existing_file, help="the new model's checkpoint")
    f.add_argument("--name", default="", type=common.text, help="short name of the model (default: from its file name)")
    f.add_argument("--order", default="", choices=("", "random", "distinct", "uncertainty"),
                   help="random (seeded), distinct or uncertainty (default: uncertainty after `transform` into "
                        "this model's space, else random)")
    f.add_argument("--seed", type=common.seed, default=0, help="seed of the random order (default 0 = EVAL.BACKFILL_SEED)")
    f.add_argument("--rows", type=common.count, default=None, help="re-embed at most this many more rows")
    f.add_argument("--fraction", type=common.fraction, default=None,
                   help="continue until this fraction of all rows is the new model's")
    f.add_argument("--step-rows", type=common.count, default=0, help="rows per commit (default max(1024, batch))")
    f.add_argument("--root", default="", type=common.existing_dir, help="image folder, when it moved since the build")
    f.add_argument("--list", default="", type=common.existing_file, help="the image list, checked against the index's ids")
    f.add_argument("--force", action="store_true", help="backfill even with a model not known to be compatible")
    f.add_argument("--nice", type=common.integer(0, 19, "niceness 0..19"), default=10,
                   help="lower this process's CPU priority by this much so searches keep theirs (default 10)")
    _loader_args(f)
    _backend_args(f)

    x = sub.add_parser("transform", prog=f"{PROG} transform",
                       help="serve a FastFill transformation's estimates on the old model's rows (no images)")
    x.add_argument("index", type=common.text, help="index folder (--backend milvus: the collection)")
    x.add_argument("--transformation", required=True, type=common.existing_file,
                   help="transformation.pth (with its transformation.json beside it) trained from the index's old model")
    x.add_argument("--model", required=True, type=common.existing_file, help="the new model's checkpoint it was trained for")
    x.add_argument("--step-rows", type=common.count, default=4096, help="rows per commit (default 4096)")
    _backend_args(x)

    t = sub.add_parser("status", prog=f"{PROG} status", help="fraction of rows per model")
    t.add_argument("index", type=common.text, help="index folder (--backend milvus: the collection)")
    t.add_argument("--json", action="store_true", help="print the status as JSON")
    _backend_args(t)

    r = sub.add_parser("rollback", prog=f"{PROG} rollback", help="serve an earlier model's stored rows again")
    r.add_argument("index", type=common.text, help="index folder (--backend milvus: the collection)")
    r.add_argument("--to", default=None, type=common.text, help="model name, tag, digest prefix or checkpoint (default: the previous)")
    _backend_args(r)

    d = sub.add_parser("prune", prog=f"{PROG} prune", help="delete stored rows (no rollback to them afterwards)")
    d.add_argument("index", type=common.text, help="index folder (--backend milvus: the collection)")
    d.add_argument("--model", default=None, type=common.text, help="delete this model's stored rows (default: every unused store)")
    _backend_args(d)

    a = sub.add_parser("ann", prog=f"{PROG} ann", help="(re)build an approximate index over the current rows")
    a.add_argument("index", type=common.text, help="index folder (--backend milvus: the collection)")
    a.add_argument("--kind", choices=("ivf", "hnsw"), default="ivf")
    a.add_argument("--nlist", type=common.nonneg_int, default=0, help="IVF lists (default 4 sqrt(N))")
    a.add_argument("--m", type=common.count, default=32, help="HNSW links per node (default 32)")

    c = sub.add_parser("copy", prog=f"{PROG} copy", help="copy an index folder into a Milvus collection")
    c.add_argument("index", type=common.existing_dir, help="the index folder to copy")
    _backend_args(c)
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def _device(name: str):
    from bct.engine.distributed import init_distributed
    return init_distributed(name)


def _query_paths(args):
    """(paths, root) of the query images given by --images, --list or --folder."""
    from bct.index.embed import folder_images

    if args.images:
        return [p for p in args.images.split(",") if p], args.root
    if args.folder:
        return folder_images(args.folder), args.folder
    from bct.data.lists import read_query_list
    return read_query_list(args.list), args.root or os.path.dirname(os.path.abspath(args.list))


def _search(args) -> dict:
    from bct.index import Index

    index = Index.open(args.index, **_where(args))
    model = args.model or None
    if args.out:
        common.refuse_overwrite(args.out, {"the query vectors file": args.vectors, "the query list": args.list,
                                           "the model checkpoint": args.model, "the index": args.index,
                                           "the Milvus Lite file": args.uri, "the query folder": args.folder,
                                           **{f"query image {i + 1}": p for i, p in
                                              enumerate(args.images.split(",") if args.images else [])}})
    if len([x for x in ("images", "list", "folder", "vectors") if getattr(args, x)]) != 1:
        raise BadInputError("search: give the queries one way: --images, --list, --folder or --vectors")
    if args.vectors:
        from bct.data.lists import read_vectors
        queries = read_vectors(args.vectors)
        names = list(range(len(queries)))
        files = [None] * len(names)
    else:
        paths, root = _query_paths(args)
        if not model:
            raise BadInputError("search: image queries need --model (the checkpoint that embeds them)")
        from bct.index.embed import embed_images
        from bct.models.loading import load_model
        device = _device(args.device)
        net = load_model(model, device, args.input_size, args.resize)
        model = net
        queries = embed_images(net, paths, root, args.batch_size, args.workers, device, not args.no_amp)
        names = paths
        files = [os.path.join(root, p) for p in paths]
    result = index.search(queries, args.k, model, force=args.force, ann=args.ann, nprobe=args.nprobe, names=names)
    for w in result.warnings:
        print(f"warning: {w} (--force)", file=sys.stderr)
    if args.out:
        result.write(args.out)
        print(f"wrote {len(result.queries)} x {result.rows.shape[1]} results to {args.out}")
    else:
        for rec in result.records():
            print(f"{rec['query']}\t{rec['rank']}\t{rec['score']:.6f}\t{rec['id']}\t{rec['model']}")
    if args.page:
        from bct.pipeline.report_page import write_search_page
        print(f"page: {write_search_page(index, result, files, args.page, args.k)}")
    return {"queries": len(result.queries), "k": int(result.rows.shape[1])}


def _print_status(st: dict) -> None:
    print(f"index {st['path']}: {st['rows']} rows x {st['dim']}")
    for m in st["models"]:
        extra = f"; its vectors of {m['stored_rows']} other rows are stored (rollback)" if m["stored_rows"] else ""
        kind = " (transformed)" if m.get("transformed") else ""
        print(f"  {m['tag']}{kind}: {100.0 * m['fraction']:.2f}% ({m['rows']} rows){extra}")
    if st["transformed_fraction"]:
        print(f"  transformed (FastFill estimates, not yet re-embedded): {100.0 * st['transformed_fraction']:.2f}%")
    if st["interrupted_apply"]:
        print("  a writer was killed in the middle of a step; the next search or backfill replays it")
    for kind, meta in st["ann"].items():
        print(f"  approximate index {kind}: built {meta['built'].split(' #')[0]} at step {meta['at_step']} "
              f"(now {st['applied_steps']})")


def _build_from_vectors_file(args, where) -> dict:
    from bct.index.build import build_from_vectors
    from bct.index.embed import read_gallery
    if not args.list:
        raise BadInputError("build --vectors needs --list (row i of the vectors is line i of the list)")
    from bct.data.lists import read_vectors
    vectors = read_vectors(args.vectors)
    ids, labels, source = read_gallery(args.list, args.root, "")
    if len(ids) != len(vectors):
        raise BadInputError(f"--vectors {args.vectors} has {len(vectors)} rows but --list {args.list} has {len(ids)}")
    res = build_from_vectors(args.out, vectors, ids, args.model, name=args.name, labels=labels,
                             root=source["root"], **where)
    return dict(res, images_per_s=0.0)


def _service_error(error: BaseException):
    """A Milvus or gRPC error raised in the middle of a command (the server went away, a timeout), or None
    for any other error."""
    kinds = []
    if sys.modules.get("pymilvus") is not None:
        from pymilvus.exceptions import MilvusException
        kinds.append(MilvusException)
    if sys.modules.get("grpc") is not None:
        import grpc
        kinds.append(grpc.RpcError)
    return error if kinds and isinstance(error, tuple(kinds)) else None


def main(argv=None):
    args = parse_args(argv)
    try:
        return _main(args)
    except Exception as e:
        if _service_error(e) is None:
            raise
        from bct.index.backends.milvus import _short
        where = f"--uri {args.uri}" if getattr(args, "uri", "") else "Milvus"
        raise BadInputError(f"{where}: the Milvus server failed during `{args.command}` ({type(e).__name__}: "
                            f"{_short(e)}); every step committed before it is whole: when the server answers "
                            f"again, rerun the same command to go on") from None


def _main(args):
    from bct.utils.logger import setup_logger
    if args.command == "build":
        from bct.index.build import build_index
        from bct.utils.comm import is_main_process
        device = _device(args.device)
        setup_logger("")
        where = _where(args)
        if args.vectors:
            res = _build_from_vectors_file(args, where)
        else:
            res = build_index(args.out, args.model, list_path=args.list, root=args.root, folder=args.folder,
                              name=args.name, batch_size=args.batch_size, workers=args.workers, device=device,
                              chunk_rows=args.chunk_rows, amp=not args.no_amp, skip_bad=args.skip_bad,
                              input_size=args.input_size, resize=args.resize, **where)
        if is_main_process():
            print(f"index {args.out}: {res['rows']} rows x {res['dim']} embedded by {res['model']} "
                  f"({res['images_per_s']:.1f} images/s)")
            if args.ann:
                from bct.index import Index
                meta = Index.open(args.out, **where).build_ann(args.ann)
                print(f"approximate index {args.ann} built in {meta['seconds']:.1f} s")
        return res
    setup_logger("")
    if args.command == "search":
        return _search(args)
    from bct.index import Index
    if args.command == "copy":
        from bct.index.build import copy_index
        if args.backend != "milvus":
            raise BadInputError("copy: give --backend milvus --uri ... (the files backend is the source)")
        res = copy_index(Index.open(args.index), **_where(args))
        print(f"copied {args.index} ({res['rows']} rows, {res['models']} models) into {res['location']}")
        return res
    index = Index.open(args.index, **_where(args))
    if args.command == "backfill":
        if args.nice > 0:
            os.nice(args.nice)
        device = _device(args.device)
        res = index.backfill(args.model, order=args.order, seed=args.seed, rows=args.rows, fraction=args.fraction,
                             batch_size=args.batch_size, workers=args.workers, device=device, root=args.root,
                             list_path=args.list, step_rows=args.step_rows, force=args.force, name=args.name,
                             input_size=args.input_size, resize=args.resize, amp=not args.no_amp)
        print(f"backfill {res['model']} ({res['order']}): {res['done']} rows this run ({res['reused']} restored from "
              f"the store), {100.0 * res['fraction']:.2f}% of the index is now {res['model']}")
        return res
    if args.command == "transform":
        res = index.transform(args.transformation, args.model, step_rows=args.step_rows)
        print(f"transform {res['old']} -> {res['new']}: {res['done']} rows this run, {100.0 * res['fraction']:.2f}% "
              f"of the index is now {res['model']} (backfill with --model to replace them, most uncertain first)")
        return res
    if args.command == "status":
        st = index.status()
        if args.json:
            print(json.dumps(st, indent=1))
        else:
            _print_status(st)
        return st
    if args.command == "rollback":
        res = index.rollback(args.to)
        print(f"rollback to {res['model']}: {res['restored']} rows restored"
              + (f", {res['not_restorable']} rows have no stored vector of it" if res["not_restorable"] else ""))
        return res
    if args.command == "prune":
        res = index.prune(args.model)
        print(f"pruned {', '.join(res['pruned']) or 'nothing'} ({res['freed_bytes'] / 2 ** 20:.1f} MiB freed)")
        return res
    meta = index.build_ann(args.kind, nlist=args.nlist, m=args.m)
    print(f"approximate index {args.kind} of {args.index} built in {meta['seconds']:.1f} s")
    return meta


if __name__ == "__main__":
    run(main)
