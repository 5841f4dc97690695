"""Benchmark of the gallery index (bct.index): not a test; it prints figures and writes them as JSON.

    python benchmarks/index_bench.py --data data/synthetic --old OLD.pth \
        --models advbct=NEW1.pth,bct=NEW2.pth --parts orders,throughput,search,concurrent,ann --out bench.json
    python benchmarks/index_bench.py --data data/synthetic --old OLD.pth --models advbct=NEW1.pth \
        --parts backends --milvus-rows 1000000 --backend-images 2048 --out backends.json

Parts:
- orders: per method and synthetic set, the backfill curve of a real index (built with the old
  model, backfilled with the method's model, searched at ratios 0, 0.1, ..., 1) for each order, and
  its area (trapezoid over the ratio, x100 mAP). Random is run with several seeds; the new model
  embeds each gallery once, the other orders restore its stored rows (bct.index.backfill reuses them).
- throughput: images/s of the evaluation's feature extraction (bct.evaluation.extract), of an index
  build and of a full backfill, on the same images and settings (alternated, best of --reps).
- search: exact top-100 of 1,000 queries over N x 256 float32 rows through Index.search, against
  faiss IndexFlatIP called directly on the same arrays in the same process; the resident memory of
  a fresh process that opens the index and searches it, against the size of the vectors.
- concurrent: the same search while a backfill (a separate process, its default niceness) re-embeds
  rows of that index, against the same search on the idle index.
- ann: recall@100 against exact search and time of IVF (several nprobe) and HNSW.
- backends (not in the default --parts; needs pymilvus and milvus-lite): the files backend beside
  the Milvus backend on Milvus Lite. Images/s of a build from images and of a whole backfill of
  it with the first --models model (the same --backend-images images at --backend-input-size, the
  two backends alternated --reps times, best of each; pymilvus imported before the clocks start),
  rows/s of a build with vectors given (--milvus-rows x 256, no embedding); 1,000 queries
  top-100 exact over those rows through each backend and raw faiss, each in a fresh process: its
  search time, and the peak resident memory of that process plus that of its child processes (a
  Milvus Lite that runs as a server process; milvus-lite 3 runs inside the process and has none).
"""
import os

# OpenMP threads that spin while waiting would count as work in the CPU times measured below, and
# they steal the cores of a shared machine: they sleep instead (both sides of every comparison).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

RATIOS = [round(0.1 * i, 1) for i in range(11)]


def log(*a):
    print(*a, flush=True)


# ------------------------------------------------------------------------------------------------
# orders
# ------------------------------------------------------------------------------------------------

def _sets(data: str):
    """{name: (gallery ids, image root, query paths, scorer(search result) -> headline x100)}."""
    from bct.data.gldv2 import load_gldv2_retrieval
    from bct.data.revisited import load_revisited
    from bct.evaluation.metrics import compute_map_revisited, gldv2_map_at_k

    out = {}
    for name in ("roxford5k", "rparis6k"):
        d = load_revisited(name, os.path.join(data, "ROxfordParis"))
        jpg = os.path.join(data, "ROxfordParis", name, "jpg")
        protocols = {"medium": d.protocol("medium")}

        def score(res, protocols=protocols):
            return 100.0 * compute_map_revisited(res.rows.T, protocols)["medium"]["map"]
        out[name] = ([os.path.relpath(p, jpg) for p in d.db_paths], jpg, d.query_paths, score, None)
    s = load_gldv2_retrieval(os.path.join(data, "GLDv2"), "private")
    root = os.path.join(data, "GLDv2")

    def score_gld(res, solution=s.solution):
        return 100.0 * gldv2_map_at_k({q: res.rows[q].tolist() for q in range(res.rows.shape[0])}, solution, 100)
    out["gldv2"] = ([os.path.relpath(p, root) for p in s.gallery_paths], root, s.query_paths, score_gld, 100)
    return out


def part_orders(args, work: str) -> dict:
    from bct.index import Index
    from bct.index.embed import embed_images
    from bct.models.loading import load_model

    seeds = list(range(args.seeds))
    results = {}
    for set_name, (ids, root, queries, score, k) in _sets(args.data).items():
        lst = os.path.join(work, f"{set_name}.txt")
        with open(lst, "w") as f:
            f.write("".join(f"{i} 0\n" for i in ids))
        base = os.path.join(work, f"{set_name}_old")
        Index.build(base, args.old, list_path=lst, root=root, batch_size=args.batch_size, workers=args.workers,
                    progress=False)
        for method, path in args.models.items():
            t0 = time.time()
            folder = os.path.join(work, f"{set_name}_{method}")
            shutil.rmtree(folder, ignore_errors=True)
            shutil.copytree(base, folder)
            idx = Index.open(folder)
            net = load_model(path)
            q = embed_images(net, queries, batch_size=args.batch_size)
            idx.backfill(path, batch_size=args.batch_size, workers=args.workers, progress=False, force=True)
            idx.rollback(progress=False)
            curves = {}
            for order, seed in [("random", s) for s in seeds] + [("distinct", 0)]:
                curve = []
                for ratio in RATIOS:
                    idx.backfill(path, order=order, seed=seed, fraction=ratio, progress=False, force=True)
                    res = idx.search(q, k=k or idx.n, model=path, force=True)
                    curve.append(score(res))
                idx.rollback(progress=False)
                curves[f"{order}:{seed}"] = curve
            random_auc = [float(np.trapezoid(curves[f"random:{s}"], RATIOS)) for s in seeds]
            entry = {"curves": curves, "random_auc_mean": float(np.mean(random_auc)),
                     "random_auc_std": float(np.std(random_auc)), "random_auc_min": float(np.min(random_auc)),
                     "random_auc_max": float(np.max(random_auc)),
                     "distinct_auc": float(np.trapezoid(curves["distinct:0"], RATIOS)),
                     "cross": curves["random:0"][0], "self": curves["random:0"][-1]}
            results.setdefault(method, {})[set_name] = entry
            log(f"orders {method:12s} {set_name:10s} cross {entry['cross']:6.2f} self {entry['self']:6.2f} | area: "
                f"random {entry['random_auc_mean']:6.2f} ± {entry['random_auc_std']:.2f} "
                f"[{entry['random_auc_min']:.2f}, {entry['random_auc_max']:.2f}] ({len(seeds)} seeds), "
                f"distinct {entry['distinct_auc']:6.2f}  ({time.time() - t0:.0f} s)")
            shutil.rmtree(folder, ignore_errors=True)
    return results


# ------------------------------------------------------------------------------------------------
# throughput
# ------------------------------------------------------------------------------------------------

def part_throughput(args, work: str) -> dict:
    from bct.config import load_cfg
    from bct.data.datasets import build_image_dataset
    from bct.data.lists import read_image_list
    from bct.evaluation.extract import extract_features
    from bct.index import Index
    from bct.models.loading import load_model

    root = os.path.join(args.data, "GLDv2")
    lst = os.path.join(root, "gldv2_train_new_100percent_class.txt")
    paths, _ = read_image_list(lst, root)
    paths, n = paths[:args.images], min(args.images, len(paths))
    sub = os.path.join(work, "throughput.txt")
    with open(sub, "w") as f:
        f.write("".join(f"{p} 0\n" for p in paths))
    old = load_model(args.old)
    new = load_model(next(iter(args.models.values())))   # loaded once: the timings are the embedding's
    cfg = load_cfg("", ["EVAL.INPUT_SIZE", str(old.input_size), "EVAL.BATCH_SIZE", str(args.batch_size),
                        "EVAL.NUM_WORKERS", str(args.workers), "DEVICE", "cpu"])
    times = {"evaluation": [], "build": [], "backfill": []}
    cpu = {"evaluation": [], "build": [], "backfill": []}
    for rep in range(args.reps):
        def evaluation():
            dataset, decoder = build_image_dataset(cfg, "eval", root, paths, size=cfg.EVAL.INPUT_SIZE,
                                                   resize=cfg.EVAL.RESIZE)
            extract_features(old, dataset, batch_size=args.batch_size, num_workers=args.workers,
                             batch_decoder=decoder)

        folder = os.path.join(work, f"tp{rep}")
        shutil.rmtree(folder, ignore_errors=True)

        def build():
            Index.build(folder, old, list_path=sub, root=root, batch_size=args.batch_size, workers=args.workers,
                        progress=False)

        def backfill():
            Index.open(folder).backfill(new, batch_size=args.batch_size, workers=args.workers, progress=False,
                                        force=True)
        # The evaluation runs first in even repetitions and last in odd ones (the machine is shared).
        steps = [("evaluation", evaluation), ("build", build), ("backfill", backfill)]
        if rep % 2:
            steps = steps[1:] + steps[:1]
        for name, fn in steps:
            c = _cpu_seconds()
            times[name] += _timed(fn, 1)
            cpu[name].append(_cpu_seconds() - c)
        shutil.rmtree(folder, ignore_errors=True)
        log(f"throughput rep {rep}: " + ", ".join(f"{k} {n / v[-1]:.1f} img/s ({n / cpu[k][-1]:.1f} per CPU-s)"
                                                  for k, v in times.items()))
    best = {k: n / min(v) for k, v in times.items()}
    median = {k: n / float(np.median(v)) for k, v in times.items()}
    per_cpu = {k: n / float(np.median(v)) for k, v in cpu.items()}
    out = {"images": n, "input_size": old.input_size, "batch_size": args.batch_size, "workers": args.workers,
           "images_per_s": best, "images_per_s_median": median, "all_seconds": times,
           "images_per_cpu_second_median": per_cpu, "all_cpu_seconds": cpu,
           "build_vs_evaluation_cpu": per_cpu["build"] / per_cpu["evaluation"],
           "backfill_vs_build_cpu": per_cpu["backfill"] / per_cpu["build"],
           "build_vs_evaluation": best["build"] / best["evaluation"],
           "backfill_vs_build": best["backfill"] / best["build"]}
    log(f"throughput (best of {args.reps}): evaluation {best['evaluation']:.1f}, build {best['build']:.1f}, backfill "
        f"{best['backfill']:.1f} img/s; build/evaluation {out['build_vs_evaluation']:.3f}, backfill/build "
        f"{out['backfill_vs_build']:.3f}; medians {median['evaluation']:.1f} / {median['build']:.1f} / "
        f"{median['backfill']:.1f}; per CPU-second (median) {per_cpu['evaluation']:.1f} / {per_cpu['build']:.1f} / "
        f"{per_cpu['backfill']:.1f}")
    return out


# ------------------------------------------------------------------------------------------------
# search, memory, concurrency, ANN
# ------------------------------------------------------------------------------------------------

def _clustered(n: int, dim: int, seed: int, centres: int = 10000, block: int = 1 << 16):
    """Yield blocks of unit vectors around `centres` random unit centres, Gaussian noise 0.03 per
    dimension (norm about 0.5): a gallery of 10,000 groups, as images of the same object."""
    c = np.random.default_rng(0).standard_normal((centres, dim)).astype(np.float32)  # shared by queries
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    rng = np.random.default_rng(seed + 1)
    for s in range(0, n, block):
        m = min(block, n - s)
        x = c[rng.integers(0, centres, m)] + 0.03 * rng.standard_normal((m, dim)).astype(np.float32)
        yield x / np.linalg.norm(x, axis=1, keepdims=True)


def _big_index(args, work: str):
    """An index of N x 256 clustered vectors recorded as the old model's, ids rows/<i>.jpg."""
    from bct.index import Index

    folder = os.path.join(work, "big")
    if os.path.isfile(os.path.join(folder, "manifest.json")):
        return Index.open(folder)
    n, dim = args.rows, 256
    tmp = os.path.join(work, "big_vectors.npy")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
    s = 0
    for block in _clustered(n, dim, 0):
        arr[s:s + len(block)] = block
        s += len(block)
    arr.flush()
    idx = Index.from_vectors(folder, arr, [f"rows/{i}.jpg" for i in range(n)], args.old,
                             root=os.path.join(work, "big_images"))
    del arr
    os.remove(tmp)
    return idx


def _queries(n: int) -> np.ndarray:
    return next(_clustered(n, 256, 1, block=n))


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the DataLoader workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(fn, reps: int):
    out = []
    for _ in range(reps):
        t = time.time()
        fn()
        out.append(time.time() - t)
    return out


def _timed_cpu(fn):
    """(wall seconds, CPU seconds of this process: every thread) of one call."""
    c, w = time.process_time(), time.time()
    fn()
    return time.time() - w, time.process_time() - c


def part_search(args, work: str) -> dict:
    import faiss

    idx = _big_index(args, work)
    q = _queries(args.queries)
    model = idx.models()[0].name
    idx.search(q[:10], k=args.k, model=model)   # warm the page cache
    flat = faiss.IndexFlatIP(idx.dim)
    flat.add(np.asarray(idx.vectors))
    ours, direct = [], []
    for _ in range(args.reps):   # alternated, so both see the same machine load
        ours.append(_timed_cpu(lambda: idx.search(q, k=args.k, model=model)))
        direct.append(_timed_cpu(lambda: flat.search(q, args.k)))
    res = idx.search(q, k=args.k, model=model)
    _, ref = flat.search(q, args.k)
    same = float(np.mean([len(np.intersect1d(a, b)) / args.k for a, b in zip(res.rows, ref)]))
    del flat
    rss = _rss_child(idx.path, args)
    med = {name: [float(np.median([t[i] for t in v])) for i in (0, 1)]
           for name, v in (("ours", ours), ("faiss", direct))}
    out = {"rows": idx.n, "dim": idx.dim, "queries": args.queries, "k": args.k, "threads": faiss.omp_get_max_threads(),
           "index_search_wall_cpu_s": ours, "faiss_flat_ip_wall_cpu_s": direct,
           "ratio_wall_median": med["ours"][0] / med["faiss"][0], "ratio_cpu_median": med["ours"][1] / med["faiss"][1],
           "same_results": same, **rss}
    log(f"search {idx.n} x {idx.dim}, {args.queries} queries, top-{args.k}: Index.search median {med['ours'][0]:.2f} s "
        f"wall / {med['ours'][1]:.2f} s CPU, faiss IndexFlatIP {med['faiss'][0]:.2f} s / {med['faiss'][1]:.2f} s; "
        f"ratio {out['ratio_wall_median']:.3f} wall, {out['ratio_cpu_median']:.3f} CPU (same top-{args.k}: "
        f"{100 * same:.2f}%)")
    log(f"memory: vectors {rss['vectors_mib']:.0f} MiB; searching process peak RSS {rss['peak_rss_mib']:.0f} MiB "
        f"({rss['peak_rss_mib'] / rss['vectors_mib']:.3f}x), of which {rss['rss_before_open_mib']:.0f} MiB before "
        f"opening")
    return out


def rss(field="VmRSS"):
    """Resident memory of this process in MiB (VmHWM: its peak)."""
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024


_RSS_SCRIPT = r"""
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[4])
from benchmarks.index_bench import rss
before = rss()
from bct.index import Index
idx = Index.open(sys.argv[1])
opened = rss()
q = np.ascontiguousarray(np.load(sys.argv[2]))
res = idx.search(q, k=int(sys.argv[3]), model=idx.models()[0].name)
after = rss()
peak = rss("VmHWM")  # the high-water mark of this process image (ru_maxrss would count the parent's before exec)
print(json.dumps({"rss_before_open_mib": before, "rss_after_open_mib": opened, "rss_after_search_mib": after,
                  "peak_rss_mib": peak, "torch_imported": "torch" in sys.modules}))
"""


def _rss_child(folder: str, args) -> dict:
    qpath = os.path.join(os.path.dirname(folder), "queries.npy")
    np.save(qpath, _queries(args.queries))
    proc = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, folder, qpath, str(args.k), REPO],
                          capture_output=True, text=True, check=True)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["vectors_mib"] = os.path.getsize(os.path.join(folder, "vectors.npy")) / 2 ** 20
    return out


_BACKEND_RSS = r"""
import json, os, sys, time
import numpy as np
sys.path.insert(0, sys.argv[5])
from benchmarks.index_bench import rss, children_peak_rss
q = np.ascontiguousarray(np.load(sys.argv[3]))
if sys.argv[1] == "faiss":
    import faiss
    v = np.load(sys.argv[2], mmap_mode="r")
    t = time.time()
    faiss.knn(q, v, int(sys.argv[4]), metric=faiss.METRIC_INNER_PRODUCT)
else:
    from bct.index import Index
    where = {} if sys.argv[1] == "files" else {"backend": "milvus", "uri": sys.argv[6]}
    t = time.time()
    idx = Index.open(sys.argv[2], **where)
    opened = time.time() - t
    t = time.time()
    idx.search(q, k=int(sys.argv[4]), model=idx.models()[0].name)
search = time.time() - t
kids = children_peak_rss()  # before the index is closed: a Milvus Lite that runs as a server process is still up
peak = rss("VmHWM")
print(json.dumps({"search_s": search, "open_s": opened if sys.argv[1] != "faiss" else 0.0,
                  "peak_rss_mib": peak, "children": kids[0], "children_peak_rss_mib": kids[1],
                  "total_peak_rss_mib": peak + kids[1]}))
"""


def children_peak_rss() -> tuple:
    """(processes, MiB): the peak resident memory (VmHWM) summed over every descendant of this
    process (a database engine run as a server process); 0 processes when it runs in-process."""
    found, stack = [], [os.getpid()]
    while stack:
        pid = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                kids = [int(k) for k in open(f"/proc/{pid}/task/{t}/children").read().split()]
            except OSError:
                kids = []
            found += kids
            stack += kids
    mib = 0.0
    for pid in set(found):
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmHWM"):
                    mib += int(line.split()[1]) / 1024
        except OSError:
            pass
    return len(set(found)), mib


def part_backends(args, work: str) -> dict:
    """Files vs Milvus Lite: build rows/s (images, vectors given), exact search time, resident memory."""
    import pymilvus  # noqa: F401  (imported before any clock starts: a once-per-process cost, not a rate)
    import milvus_lite  # noqa: F401
    from bct.index import Index

    out = {"rows": args.milvus_rows, "dim": 256, "queries": args.queries, "k": args.k,
           "milvus_lite": getattr(milvus_lite, "__version__", "?"), "pymilvus": pymilvus.__version__}
    uri = os.path.join(work, "milvus.db")
    n = args.milvus_rows
    if args.backend_images and (args.backend_list or os.path.isdir(args.data)):
        if args.backend_list:
            from bct.data.lists import read_image_list
            jpg = os.path.dirname(os.path.abspath(args.backend_list))
            ids_img, _ = read_image_list(args.backend_list, jpg)
        else:
            ids_img, jpg, _, _, _ = _sets(args.data)["roxford5k"]
        lst = os.path.join(work, "backend_images.txt")
        m = min(args.backend_images, len(ids_img))
        with open(lst, "w") as f:
            f.writelines(f"{i} 0\n" for i in ids_img[:m])
        kw = dict(list_path=lst, root=jpg, batch_size=args.batch_size, workers=args.workers, device="cpu",
                  progress=False, input_size=args.backend_input_size)
        # Each build is followed by a whole backfill of the same images with the new model (--models' first).
        new_model = next(iter(args.models.values()))
        runs = {(step, name): [] for step in ("build", "backfill") for name in ("files", "milvus")}
        for rep in range(args.reps):  # alternated, each into a new folder / Lite file; best of --reps
            for name in ("files", "milvus") if rep % 2 == 0 else ("milvus", "files"):
                folder = os.path.join(work, f"backend_{name}_img{rep}" + (".db" if name == "milvus" else ""))
                where = {"backend": "milvus", "uri": folder} if name == "milvus" else {}
                t = time.time()
                idx = Index.build(folder if name == "files" else "images", args.old, **kw, **where)
                runs["build", name].append(m / (time.time() - t))
                t = time.time()
                idx.backfill(new_model, force=True, **kw)
                runs["backfill", name].append(m / (time.time() - t))
                idx.store.close()
                shutil.rmtree(folder, ignore_errors=True)
        out["input_size"] = args.backend_input_size or "the checkpoints'"
        for step in ("build", "backfill"):
            for name in ("files", "milvus"):
                out[f"{name}_{step}_images_per_s"] = max(runs[step, name])
                out[f"{name}_{step}_images_per_s_runs"] = runs[step, name]
            ratio = out[f"milvus_{step}_images_per_s"] / out[f"files_{step}_images_per_s"]
            out[f"milvus_over_files_{step}_images"] = ratio
            log(f"{step} of {m} images at input size {out['input_size']} (best of {args.reps}): files {out[f'files_{step}_images_per_s']:.1f} images/s, "
                f"Milvus Lite {out[f'milvus_{step}_images_per_s']:.1f} images/s ({100 * ratio:.0f} % of files)")
    vec_path = os.path.join(work, "backend_vectors.npy")
    arr = np.lib.format.open_memmap(vec_path, mode="w+", dtype=np.float32, shape=(n, 256))
    s = 0
    for block in _clustered(n, 256, 0):
        arr[s:s + len(block)] = block
        s += len(block)
    arr.flush()
    ids = [f"rows/{i}.jpg" for i in range(n)]
    t = time.time()
    Index.from_vectors(os.path.join(work, "backend_files"), arr, ids, args.old)
    out["files_build_vectors_rows_per_s"] = n / (time.time() - t)
    t = time.time()
    Index.from_vectors("vectors", arr, ids, args.old, backend="milvus", uri=uri).store.close()
    out["milvus_build_vectors_rows_per_s"] = n / (time.time() - t)
    log(f"build with vectors given, {n} x 256: files {out['files_build_vectors_rows_per_s']:.0f} rows/s, "
        f"Milvus Lite {out['milvus_build_vectors_rows_per_s']:.0f} rows/s")
    qpath = os.path.join(work, "backend_queries.npy")
    np.save(qpath, _queries(args.queries))
    del arr
    for name, where in (("faiss", vec_path), ("files", os.path.join(work, "backend_files")), ("milvus", "vectors")):
        proc = subprocess.run([sys.executable, "-c", _BACKEND_RSS, name, where, qpath, str(args.k), REPO, uri],
                              capture_output=True, text=True, check=True)
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        log(f"search {args.queries} queries top-{args.k} over {n} x 256 ({name}): {out[name]['search_s']:.2f} s "
            f"(opening {out[name]['open_s']:.1f} s), peak RSS {out[name]['total_peak_rss_mib']:.0f} MiB "
            f"({out[name]['children']} child processes: {out[name]['children_peak_rss_mib']:.0f} MiB)")
    out["vectors_mib"] = n * 256 * 4 / 2 ** 20
    return out


def part_concurrent(args, work: str) -> dict:
    """Search the big index idle, then while a backfill process re-embeds some of its rows."""
    from bct.data.lists import read_image_list
    from bct.index import Index

    idx = _big_index(args, work)
    new_path = next(iter(args.models.values()))
    from bct.utils.fileio import file_digest
    if any(m.digest == file_digest(new_path) for m in idx.models()):
        idx.rollback(to=0, progress=False)
        idx.prune(file_digest(new_path))   # every phase embeds (none restores a stored row)
    # The rows the backfill will reach first (its random plan) get real images to embed.
    plan = np.random.default_rng(0).permutation(idx.n)[:args.backfill_rows]
    src_root = os.path.join(args.data, "GLDv2")
    images, _ = read_image_list(os.path.join(src_root, "gldv2_train_new_100percent_class.txt"), src_root)
    img_dir = os.path.join(work, "big_images", "rows")
    os.makedirs(img_dir, exist_ok=True)
    for j, r in enumerate(plan.tolist()):
        link = os.path.join(img_dir, f"{r}.jpg")
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(os.path.join(src_root, images[j % len(images)])), link)
    q = _queries(args.queries)
    model = new_path  # the new model reads both models' rows; the old one would be refused once rows are new
    idx.search(q[:10], k=args.k, model=model)
    cmd = [sys.executable, "-m", "bct.tools.index", "backfill", idx.path, "--model", new_path, "--rows",
           str(args.backfill_rows), "--batch-size", str(args.batch_size), "--workers", str(args.workers),
           "--force", "--device", "cpu"]
    env = dict(os.environ, PYTHONPATH=REPO)
    idle, busy, steps = [], [], []
    # Phases alternate (the machine is shared, its load drifts): a search on the idle index, then a
    # backfill process is started, and once it commits steps the same search runs beside it; the
    # backfill is then interrupted (Ctrl-C; the next phase's backfill continues it).
    for phase in range(args.reps):
        if phase % 2 == 0:  # idle first in even phases, last in odd ones
            idle.append(_timed_cpu(lambda: idx.search(q, k=args.k, model=model)))
        before = idx.status()["applied_steps"]
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        while proc.poll() is None and idx.status()["applied_steps"] < before + 1:
            time.sleep(0.2)
        if proc.poll() is not None:
            raise RuntimeError("the backfill ended before the search: " + proc.stdout.read()[-2000:])
        before = idx.status()["applied_steps"]
        busy.append(_timed_cpu(lambda: idx.search(q, k=args.k, model=model)))
        time.sleep(0.5)
        steps.append(idx.status()["applied_steps"] - before)
        proc.send_signal(signal.SIGINT)
        proc.wait()
        if phase % 2 == 1:
            idle.append(_timed_cpu(lambda: idx.search(q, k=args.k, model=model)))
        log(f"concurrent phase {phase}: idle {idle[-1][0]:.2f} s, during backfill {busy[-1][0]:.2f} s "
            f"(the backfill's commits waiting for it: {steps[-1]}, applied as it ended)")
    med_idle, med_busy = float(np.median([t[0] for t in idle])), float(np.median([t[0] for t in busy]))
    out = {"idle_wall_cpu_s": idle, "during_backfill_wall_cpu_s": busy, "steps_committed": steps,
           "ratio_median": med_busy / med_idle}
    log(f"concurrent: search idle median {med_idle:.2f} s, during a backfill median {med_busy:.2f} s; ratio "
        f"{out['ratio_median']:.3f}")
    idx.rollback(to=0, progress=False)
    idx.prune()
    return out


def part_ann(args, work: str) -> dict:
    from bct.index.ann import recall_at_k

    idx = _big_index(args, work)
    q = _queries(args.queries)
    model = idx.models()[0].name
    exact = idx.search(q, k=args.k, model=model)
    out = {}
    t = time.time()
    meta = idx.build_ann("ivf", nlist=args.nlist)
    out["ivf_build_s"] = time.time() - t
    out["ivf_nlist"] = meta["nlist"]
    t_exact = min(_timed(lambda: idx.search(q, k=args.k, model=model), 2))
    out["exact_s"] = t_exact
    for nprobe in (8, 16, 32, 64):
        res = [None]

        def run(nprobe=nprobe):
            res[0] = idx.search(q, k=args.k, model=model, ann="ivf", nprobe=nprobe)
        t = min(_timed(run, 2))
        out[f"ivf_nprobe{nprobe}"] = {"seconds": t, "recall": recall_at_k(exact.rows, res[0].rows)}
        recall = out[f"ivf_nprobe{nprobe}"]["recall"]
        log(f"ann ivf nlist {meta['nlist']} nprobe {nprobe}: recall@{args.k} {recall:.4f}, "
            f"{t:.2f} s (exact {t_exact:.2f} s)")
    if args.hnsw_rows:
        from bct.index import Index
        sub = os.path.join(work, "hnsw")
        shutil.rmtree(sub, ignore_errors=True)
        small = Index.from_vectors(sub, idx.vectors[:args.hnsw_rows], [f"r{i}" for i in range(args.hnsw_rows)],
                                   args.old)
        t = time.time()
        small.build_ann("hnsw")
        out["hnsw_rows"], out["hnsw_build_s"] = args.hnsw_rows, time.time() - t
        exact_small = small.search(q, k=args.k, model=model)
        te = min(_timed(lambda: small.search(q, k=args.k, model=model), 2))
        for nprobe in (16, 32, 64):
            res = [None]

            def run(nprobe=nprobe):
                res[0] = small.search(q, k=args.k, model=model, ann="hnsw", nprobe=nprobe)
            t = min(_timed(run, 2))
            out[f"hnsw_ef{16 * nprobe}"] = {"seconds": t, "recall": recall_at_k(exact_small.rows, res[0].rows),
                                            "exact_s": te}
            log(f"ann hnsw {args.hnsw_rows} rows efSearch {16 * nprobe}: recall@{args.k} "
                f"{out[f'hnsw_ef{16 * nprobe}']['recall']:.4f}, {t:.2f} s (exact {te:.2f} s)")
        shutil.rmtree(sub, ignore_errors=True)
    return out


PARTS = ("orders", "throughput", "search", "concurrent", "ann")  # the default; backends needs pymilvus
CHOICES = PARTS + ("backends",)


def build_parser():
    from bct.tools import common
    p = common.script_parser(__file__, __doc__)
    p.add_argument("--data", default=os.path.join(REPO, "data", "synthetic"), type=common.existing_dir, help="the synthetic benchmark folder")
    p.add_argument("--old", required=True, type=common.existing_file, help="old model checkpoint")
    p.add_argument("--models", required=True, type=common.models, help="method=checkpoint,... (new models trained against --old)")
    p.add_argument("--parts", default=",".join(PARTS), type=common.csv_list(common.choice(*CHOICES)),
                   help=f"comma list of {', '.join(CHOICES)} (default: all but backends)")
    p.add_argument("--work", default="", type=common.output_dir, help="scratch folder (default: a temporary one, removed)")
    p.add_argument("--out", default="", type=common.output_file, help="write the figures to this JSON file")
    p.add_argument("--seeds", type=common.count, default=10, help="random-order seeds (orders)")
    p.add_argument("--batch-size", type=common.count, default=128)
    p.add_argument("--workers", type=common.nonneg_int, default=1)
    p.add_argument("--images", type=common.count, default=4483, help="images for the throughput part")
    p.add_argument("--reps", type=common.count, default=3)
    p.add_argument("--rows", type=common.count, default=1_000_000, help="rows of the search benchmark index")
    p.add_argument("--queries", type=common.count, default=1000)
    p.add_argument("--k", type=common.count, default=100)
    p.add_argument("--backfill-rows", type=common.count, default=20000,
                   help="rows the concurrent part may re-embed (image links are made for them)")
    p.add_argument("--milvus-rows", type=common.count, default=1_000_000,
                   help="rows of the backends part (Milvus Lite beside the files backend)")
    p.add_argument("--backend-images", type=common.nonneg_int, default=2048,
                   help="images built into each backend, --reps times alternated (0: skip)")
    p.add_argument("--backend-input-size", type=common.nonneg_int, default=0,
                   help="input size of the backends part's image builds and backfills (default 0: the checkpoints')")
    p.add_argument("--backend-list", default="", type=common.existing_file,
                   help="image list of those images (default: roxford5k of --data)")
    p.add_argument("--hnsw-rows", type=common.nonneg_int, default=50_000, help="rows of the HNSW measurement (0: skip)")
    p.add_argument("--nlist", type=common.count, default=1024, help="IVF lists of the ann part")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.models = dict(args.models)
    work = args.work or tempfile.mkdtemp(prefix="index_bench_")
    os.makedirs(work, exist_ok=True)
    figures = {"machine": {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
                           "load_average_at_start": os.getloadavg()}, "args": {k: v for k, v in vars(args).items()}}
    parts = {"orders": part_orders, "throughput": part_throughput, "search": part_search,
             "concurrent": part_concurrent, "ann": part_ann, "backends": part_backends}
    try:
        for name in args.parts:
            t = time.time()
            figures[name] = parts[name](args, work)
            figures[name]["part_seconds"] = time.time() - t
            if args.out:
                with open(args.out, "w") as f:
                    json.dump(figures, f, indent=1)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    figures["machine"]["load_average_at_end"] = os.getloadavg()
    figures["machine"]["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=1)
    return figures


if __name__ == "__main__":
    from bct.tools.common import run
    run(main)
