"""Speed benchmark of the training, data, extraction and search paths (a script, not a test).

Times the project's own code on this machine: the Trainer's step of plain cross-entropy training
(TRAIN.TYPE base, docs/method.md) and of every compatible method (docs/method.md: AdvBCT = bct_limit with
the elastic boundary and the discriminator, and every other method of bct/methods) on
one pre-loaded batch, the training DataLoader alone, feature extraction and exact search with both
backends (docs/evaluation.md). Prints a table and writes everything to a JSON file. See docs/benchmarks.md.

    python benchmarks/speed.py [--data DIR] [--size 64] [--batch 32] [--iters 20]
        [--warmup 3] [--arch resnet18] [--workers N] [--out results.json]
        [--device auto|cpu|cuda] [--modes fp32 amp amp_cl] [--threads N]

Without --data (or with an empty or missing folder) a synthetic JPEG set is generated (into DIR,
where it is reused next time, else into a temporary folder). The old model is a randomly
initialised build_model(cfg, "old") saved as a checkpoint, and its class statistics are
fabricated JSON files, so every compatible trainer is built by the real Trainer from a config.
"""
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

if __package__ in (None, ""):  # run as `python benchmarks/speed.py`: the repository root holds bct
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bct.config.loader import load_layers
from bct.config.methods import method_file, method_names
from bct.data.datasets import ImageListDataset
from bct.data.lists import read_image_list
from bct.data.transforms import build_transform
from bct.engine.checkpoint import save_checkpoint
from bct.engine.distributed import resolve_device
from bct.tools.common import count, existing_dir, nonneg_int, output_file, run, script_parser, text, work_path
from benchmarks.images import make_images
from bct.utils.errors import BadInputError
from bct.utils.fileio import write_json_atomic
from bct.utils.logger import setup_logger

LIST_NAME = "benchmark_list.txt"
MODES = ("fp32", "amp", "amp_cl")
# The baseline step is the oracle's (plain cross-entropy with the new model's class count, the same step
# as old-model training); every other method of the catalogue (bct/methods) is timed against it,
# each built from its own yml, so a method added to the catalogue is measured with no change here.
BASE = "oracle"
# AdvBCT step time / plain step time that the project accepts on a CPU.
CPU_RATIO_LIMIT = 1.4


def build_parser():
    p = script_parser(__file__, __doc__)
    p.add_argument("--data", default="", type=work_path, help="folder holding benchmark_list.txt, an image list file "
                   "('relative/path.jpg label' lines), or an empty/missing folder to generate into")
    p.add_argument("--root", default="", type=existing_dir, help="image root of a list file given as --data (default: its folder)")
    p.add_argument("--images", type=count, default=512, help="images generated, or first N of a given list")
    p.add_argument("--classes", type=count, default=64, help="classes of the generated set")
    p.add_argument("--image-px", type=count, default=None, help="side of the generated JPEGs (default 2 x --size)")
    p.add_argument("--size", type=count, default=None, help="network input side (default 224 on CUDA, 64 on CPU)")
    p.add_argument("--batch", type=count, default=32, help="images per training / loading / extraction batch")
    p.add_argument("--iters", type=count, default=20, help="timed training steps per method and mode")
    p.add_argument("--warmup", type=nonneg_int, default=3, help="untimed training steps first")
    p.add_argument("--repeats", type=count, default=3, help="timed passes of loading, extraction and search")
    p.add_argument("--arch", default="resnet18", type=text, help="torchvision architecture of old and new models")
    p.add_argument("--workers", type=nonneg_int, default=min(8, os.cpu_count() or 1), help="data-loading workers")
    p.add_argument("--threads", type=count, default=None, help="torch (and faiss) CPU threads (default: torch's)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--modes", nargs="+", default=None, choices=MODES,
                   help="training precisions (default: all on CUDA, fp32 on CPU; AMP is CUDA-only)")
    p.add_argument("--methods", nargs="+", default=method_names(include_oracle=False),
                   choices=method_names(include_oracle=False), help="compatible methods timed against base")
    p.add_argument("--gallery", type=count, default=None, help="search gallery size (default 100000 CUDA, 20000 CPU)")
    p.add_argument("--queries", type=count, default=1000, help="search queries")
    p.add_argument("--topk", type=count, default=100, help="search depth k")
    p.add_argument("--skip", nargs="+", default=[], choices=("training", "loading", "extraction", "search"),
                   help="sections not to run")
    p.add_argument("--out", default="", type=output_file, help="JSON report (default output/benchmarks/speed_<device>.json)")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def resolve_data(args, work: str):
    """(image root, list file of at most --images lines under `work`, class count) for the run."""
    px = args.image_px or 2 * args.size
    data = args.data
    if not data:
        root = os.path.join(work, "images")
        src = make_images(root, args.images, args.classes, px, px, list_name=LIST_NAME)
    elif os.path.isfile(data):
        root, src = args.root or os.path.dirname(os.path.abspath(data)), data
    elif os.path.isfile(os.path.join(data, LIST_NAME)):
        root, src = data, os.path.join(data, LIST_NAME)
    elif not os.path.exists(data) or not os.listdir(data):
        print(f"generating {args.images} synthetic {px}px JPEGs of {args.classes} classes in {data}")
        root, src = data, make_images(data, args.images, args.classes, px, px, list_name=LIST_NAME)
    else:
        raise BadInputError(f"--data {data}: a non-empty folder without {LIST_NAME}; give an image list file "
                            f"('relative/path.jpg label' lines), a folder holding {LIST_NAME}, or an empty folder")
    paths, labels = read_image_list(src, root)
    paths, labels = paths[:args.images], labels[:args.images]
    list_path = os.path.join(work, "list.txt")
    with open(list_path, "w") as f:
        f.write("".join(f"{p} {int(y)}\n" for p, y in zip(paths, labels)))
    return root, list_path, int(labels.max()) + 1


# -- configs, fake old model -------------------------------------------------------------------
def base_opts(args, device, root: str, list_path: str, n_classes: int, work: str) -> dict:
    """KEY VALUE overrides shared by every trainer of the run (strings, as on a command line)."""
    n_old = max(1, n_classes // 2)
    return {
        "DEVICE": device.type, "OUTPUT": os.path.join(work, "output"), "TAG": "benchmark",
        "TRAIN.ROOT": root, "TRAIN.LIST_FILE": list_path, "TRAIN.BATCH_SIZE": args.batch,
        "TRAIN.INPUT_SIZE": args.size, "TRAIN.NUM_WORKERS": 0, "TRAIN.VAL_FREQ": 0,
        # A small rate: the same batch is stepped on many times and must not diverge.
        "TRAIN.OPTIMIZER.BASE_LR": 1e-4,
        "OLD_MODEL.ARCH": args.arch, "NEW_MODEL.ARCH": args.arch,
        "OLD_MODEL.PRETRAINED": False, "NEW_MODEL.PRETRAINED": False,
        "OLD_MODEL.NUM_CLASSES": n_old, "NEW_MODEL.NUM_CLASSES": n_classes,
        "OLD_MODEL.MODEL_PATH": os.path.join(work, "old", "model_final.pth"),
        "COMP_LOSS.RADIUS_FILE": os.path.join(work, "old", "radius.json"),
        "COMP_LOSS.ANGLE_FILE": os.path.join(work, "old", "angle.json"),
        "EVAL.BATCH_SIZE": args.batch, "EVAL.INPUT_SIZE": args.size,
    }


def make_cfg(opts: dict, extra: dict = None, method: str = BASE):
    """The config of `method` (its catalogue yml) under the run's KEY VALUE overrides."""
    merged = dict(opts, **(extra or {}))
    return load_layers([method_file(method)], [str(x) for kv in merged.items() for x in kv], notes=[],
                       sets={"METHOD.NAME": method})


def write_fake_old_model(cfg, seed: int = 0) -> None:
    """A random old checkpoint at OLD_MODEL.MODEL_PATH and fabricated radius.json / angle.json.

    Centres are random directions of norm 0.6-0.9 (means of unit vectors are shorter than 1), each
    class gets six sorted inlier distances in [0.2, 0.9] and angles in [0.2, 1.2] rad, so every
    class is valid for the boundary losses.
    """
    from bct.models.build import build_model

    model = build_model(cfg, "old")
    save_checkpoint(cfg.OLD_MODEL.MODEL_PATH, {"model": model.state_dict(), "meta": model.meta, "epoch": 0})
    n, dim = cfg.OLD_MODEL.NUM_CLASSES, cfg.MODEL.EMB_DIM
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n, dim))
    centres *= rng.uniform(0.6, 0.9, (n, 1)) / np.linalg.norm(centres, axis=1, keepdims=True)
    for path, lo, hi in ((cfg.COMP_LOSS.RADIUS_FILE, 0.2, 0.9), (cfg.COMP_LOSS.ANGLE_FILE, 0.2, 1.2)):
        values = np.sort(rng.uniform(lo, hi, (n, 6)), axis=1)
        write_json_atomic(path, {str(k): {"center": centres[k].tolist(), "radius": values[k].tolist()}
                                 for k in range(n)})


# -- timing helpers ---------------------------------------------------------------------------
def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _summary(times_s, n_images: int) -> dict:
    """Median-based summary of repeated timings of one unit of work over n_images images."""
    med = statistics.median(times_s)
    return {"median_ms": med * 1e3, "min_ms": min(times_s) * 1e3, "max_ms": max(times_s) * 1e3,
            "runs": len(times_s), "images_per_s": n_images / med}


def _rss_mb() -> dict:
    # ru_maxrss is in KiB on Linux (bytes on macOS); it is a peak over the whole process life.
    scale = 1 / 1024 if platform.system() != "Darwin" else 1 / 2**20
    return {"self_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale,
            "children_max_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale}


def _memory(device) -> dict:
    out = _rss_mb()
    if device.type == "cuda":
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        out["cuda_max_reserved_mb"] = torch.cuda.max_memory_reserved(device) / 2**20
    return out


# -- sections -----------------------------------------------------------------------------------
def preload_batch(cfg, device):
    """One training batch through the real dataset and transform: images (B, 3, S, S) and labels
    (B,) on `device`, drawn with a fixed seed so that old and new classes mix."""
    paths, labels = read_image_list(cfg.TRAIN.LIST_FILE, cfg.TRAIN.ROOT)
    if len(paths) < cfg.TRAIN.BATCH_SIZE:
        raise BadInputError(f"{cfg.TRAIN.LIST_FILE}: {len(paths)} images cannot fill a --batch of "
                            f"{cfg.TRAIN.BATCH_SIZE}; lower --batch or raise --images")
    dataset = ImageListDataset(cfg.TRAIN.ROOT, paths, labels, transform=build_transform(cfg.TRAIN.INPUT_SIZE))
    pick = np.random.default_rng(0).permutation(len(paths))[:cfg.TRAIN.BATCH_SIZE]
    items = [dataset[int(i)] for i in pick]
    images = torch.stack([it[0] for it in items]).to(device)
    return images, torch.tensor([it[1] for it in items], dtype=torch.long, device=device)


def bench_training(opts: dict, methods, mode: str, images, labels, device, iters: int, warmup: int) -> dict:
    """Step times of base and each compatible method in one precision mode.

    Every trainer is a real Trainer built from a config (fp32; amp: USE_AMP; amp_cl: USE_AMP and
    CHANNELS_LAST) and timed through Trainer.step, so the AMP, channels_last, grad-norm and logging
    work of a real step is included. The trainers take turns, one step each per round, so that all
    methods see the same machine load. "old_forward" times the frozen old model's forward alone
    (no_grad, eval mode), the cost every compatible step adds before its loss.
    Returns {method: timing summary and ratios to base (CUDA: step_peak_extra_mb), "memory": {...}}.
    """
    from bct.engine.trainer import Trainer

    amp, channels_last = mode != "fp32", mode == "amp_cl"
    on_cuda = device.type == "cuda"
    extra = {"USE_AMP": amp, "CHANNELS_LAST": channels_last}
    trainers = {name: Trainer(make_cfg(opts, extra, BASE if name == "base" else name), device)
                for name in ["base"] + list(methods)}
    old_model = next((t.old_model for t in trainers.values() if t.old_model is not None), None)
    old_images = images.contiguous(memory_format=torch.channels_last) if channels_last else images

    def old_forward():
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16, enabled=amp and on_cuda):
            old_model(old_images)

    steps = {}
    for name, trainer in trainers.items():
        trainer.task.train()
        params = [p for p in trainer.task.parameters() if p.requires_grad]
        counter = iter(range(10 ** 9))
        steps[name] = (lambda t=trainer, ps=params, c=counter: t.step(images, labels, 0, next(c), ps))
    if old_model is not None:
        steps["old_forward"] = old_forward

    times = {name: [] for name in steps}
    extra_mem = {name: 0.0 for name in steps}
    # The per-step peak needs a reset before every step, so the section's own peak is kept here.
    peak_alloc = peak_reserved = 0.0
    names = list(steps)
    for r in range(warmup + iters):
        # Rotating the order keeps any first-in-round or after-method-X effect from favouring one method.
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = steps[name]
            if on_cuda:
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
                if on_cuda:
                    peak = (torch.cuda.max_memory_allocated(device) - before) / 2**20
                    extra_mem[name] = max(extra_mem[name], peak)
            if on_cuda:
                peak_alloc = max(peak_alloc, torch.cuda.max_memory_allocated(device) / 2**20)
                peak_reserved = max(peak_reserved, torch.cuda.max_memory_reserved(device) / 2**20)

    n = images.shape[0]
    out = {}
    for name in steps:
        res = _summary(times[name], n)
        # The headline ratio pairs each step with the base step of the same round (seconds apart,
        # under the same load) and takes the median over rounds; on a shared machine it is much
        # steadier than a ratio of medians. Noise only ever adds time, hence the ratio of minima too.
        res["ratio_to_base"] = statistics.median(t / b for t, b in zip(times[name], times["base"]))
        res["ratio_of_medians"] = statistics.median(times[name]) / statistics.median(times["base"])
        res["ratio_of_minima"] = min(times[name]) / min(times["base"])
        if on_cuda:
            res["step_peak_extra_mb"] = extra_mem[name]
        out[name] = res
    out["memory"] = _memory(device)
    if on_cuda:
        out["memory"].update(cuda_max_allocated_mb=peak_alloc, cuda_max_reserved_mb=peak_reserved)
    del trainers, steps, old_model
    if on_cuda:
        torch.cuda.empty_cache()
    return out


def bench_loading(cfg, repeats: int) -> dict:
    """Images/s of the real training DataLoader (dataset, transform, sampler, collate), no model.

    The first pass also starts the worker processes; it is reported apart from the median of the
    following passes (files are in the page cache by then, as on a warm training machine)."""
    from bct.engine.loaders import build_train_loader

    loader, sampler = build_train_loader(cfg, cfg.SEED)
    n = len(loader) * cfg.TRAIN.BATCH_SIZE
    times = []
    for epoch in range(repeats + 1):
        sampler.set_epoch(epoch)
        t0 = time.perf_counter()
        for _ in loader:
            pass
        times.append(time.perf_counter() - t0)
    out = _summary(times[1:], n)
    out.update({"images": n, "workers": cfg.TRAIN.NUM_WORKERS, "first_pass_s": times[0],
                "first_pass_images_per_s": n / times[0]})
    del loader
    return out


def bench_extraction(cfg, device, workers: int, repeats: int) -> dict:
    """Images/s of extract_features (loading included) with a randomly initialised new model."""
    from bct.evaluation.extract import extract_features
    from bct.models.build import build_model

    paths, labels = read_image_list(cfg.TRAIN.LIST_FILE, cfg.TRAIN.ROOT)
    dataset = ImageListDataset(cfg.TRAIN.ROOT, paths, labels, transform=build_transform(cfg.EVAL.INPUT_SIZE))
    model = build_model(cfg, "new").to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        extract_features(model, dataset, cfg.EVAL.BATCH_SIZE, workers, device, amp=cfg.USE_AMP)
        _sync(device)
        times.append(time.perf_counter() - t0)
    out = _summary(times[1:], len(dataset))
    out.update({"images": len(dataset), "workers": workers, "amp": bool(cfg.USE_AMP and device.type == "cuda"),
                "first_pass_s": times[0]})
    out["memory"] = _memory(device)
    return out


def faiss_version():
    """faiss.__version__, or None when faiss cannot be imported (it is optional on GPU machines)."""
    try:
        import faiss
    except ImportError:
        return None
    return getattr(faiss, "__version__", "unknown")


def bench_search(n_gallery: int, n_query: int, k: int, dim: int, repeats: int, threads: int) -> dict:
    """Seconds of bct.evaluation.search.search on random unit features, per backend."""
    from bct.evaluation.search import search

    rng = np.random.default_rng(0)
    gallery = rng.standard_normal((n_gallery, dim), dtype=np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    query = rng.standard_normal((n_query, dim), dtype=np.float32)
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    out = {"gallery": n_gallery, "queries": n_query, "k": k, "dim": dim}
    torch_device = "cuda" if torch.cuda.is_available() else "cpu"
    for backend in ("faiss", "torch"):
        if backend == "faiss":
            if faiss_version() is None:
                out["faiss"] = {"available": False, "note": "faiss is not installed here"}
                continue
            import faiss
            if threads:
                faiss.omp_set_num_threads(threads)
        times = []
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            search(query, gallery, k, backend=backend)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times[1:])
        out[backend] = {"available": True, "median_s": med, "min_s": min(times[1:]), "first_s": times[0],
                        "queries_per_s": n_query / med,
                        "device": "cpu" if backend == "faiss" else torch_device}
    return out


# -- report -------------------------------------------------------------------------------------
def device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def print_table(report: dict) -> None:
    env, s = report["environment"], report["settings"]
    print(f"\nbct speed benchmark: {env['device']} ({env['device_name']}), torch {env['torch']}, "
          f"{env['torch_threads']} threads; {s['arch']}, {s['size']} px, batch {s['batch']}")
    if "training" in report:
        print(f"training step on a pre-loaded batch (median of {s['iters']} after {s['warmup']} warm-up; "
              f"'x base': median step / base step of the same round, '(min)': fastest / fastest)")
        cuda = env["device"] == "cuda"
        print(f"  {'mode':7s}{'method':13s}{'ms/step':>10s}{'min ms':>9s}{'img/s':>9s}{'x base':>8s}"
              f"{'(min)':>7s}" + (f"{'step MB':>9s}" if cuda else ""))
        for mode, res in report["training"].items():
            for name, r in res.items():
                if name == "memory":
                    continue
                print(f"  {mode:7s}{name:13s}{r['median_ms']:10.1f}{r['min_ms']:9.1f}{r['images_per_s']:9.1f}"
                      f"{r['ratio_to_base']:8.3f}{r['ratio_of_minima']:7.3f}"
                      + (f"{r['step_peak_extra_mb']:9.0f}" if cuda else ""))
    if "advbct_ratio" in report:
        verdict = ""
        if env["device"] == "cpu":
            within = report["advbct_ratio"] <= CPU_RATIO_LIMIT
            verdict = f" ({'within' if within else 'ABOVE'} the {CPU_RATIO_LIMIT} limit)"
        print(f"AdvBCT / plain step time ({report['advbct_ratio_mode']}): {report['advbct_ratio']:.3f} "
              f"(median of paired steps){verdict}; ratio of fastest steps {report['advbct_ratio_min']:.3f}")
    if "data_loading" in report:
        r = report["data_loading"]
        print(f"data loading: {r['images_per_s']:.1f} img/s ({r['workers']} workers; first pass "
              f"{r['first_pass_images_per_s']:.1f} img/s)")
    if "extraction" in report:
        r = report["extraction"]
        print(f"extraction: {r['images_per_s']:.1f} img/s ({r['workers']} workers, amp {r['amp']})")
    if "search" in report:
        r = report["search"]
        parts = [f"{b} ({r[b]['device']}) {r[b]['median_s']:.3f} s" if r[b]["available"] else f"{b} unavailable"
                 for b in ("faiss", "torch")]
        print(f"search {r['gallery']} x {r['dim']}, {r['queries']} queries, k={r['k']}: " + ", ".join(parts))
    mem = report["memory"]
    line = f"peak memory: max RSS {mem['self_max_rss_mb']:.0f} MB"
    if "cuda_max_allocated_mb" in mem:
        line += f", CUDA max allocated {mem['cuda_max_allocated_mb']:.0f} MB"
    print(line)


class SectionError(RuntimeError):
    """Some benchmark sections failed; the others were measured and written."""


def _section(report: dict, where: tuple, fn, *args) -> None:
    """report[where...] = fn(*args); a failure is recorded under report["errors"] instead, so that one
    broken section (say, DataLoader workers short of shared memory) does not cost the others."""
    try:
        result = fn(*args)
    except BadInputError:
        raise
    except Exception as e:
        name = ".".join(where)
        report.setdefault("errors", {})[name] = f"{type(e).__name__}: {e}"
        print(f"{name} failed: {type(e).__name__}: {e}", flush=True)
        return
    node = report
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = result


def _save(path: str, report: dict, device) -> None:
    """Write the report so far: a run stopped by a time limit still leaves its finished sections."""
    memory = _memory(device)
    if device.type == "cuda":
        # Sections reset the CUDA peak counters; the run's peak is the largest section peak.
        sections = [m["memory"] for m in report.get("training", {}).values()]
        sections += [report["extraction"]["memory"]] if "extraction" in report else []
        for key in ("cuda_max_allocated_mb", "cuda_max_reserved_mb"):
            memory[key] = max([memory[key]] + [m[key] for m in sections])
    report["memory"] = memory
    report["environment"]["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    write_json_atomic(path, report, indent=1)


def main(argv=None) -> dict:
    args = parse_args(argv)
    setup_logger("")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    on_cuda = device.type == "cuda"
    args.size = args.size or (224 if on_cuda else 64)
    modes = args.modes or (list(MODES) if on_cuda else ["fp32"])
    skipped_modes = [m for m in modes if m != "fp32" and not on_cuda]
    modes = [m for m in modes if m not in skipped_modes]
    n_gallery = args.gallery or (100000 if on_cuda else 20000)
    out_path = args.out or os.path.join("output", "benchmarks", f"speed_{device.type}.json")

    report = {
        "environment": {
            "device": device.type, "device_name": device_name(device), "torch": torch.__version__,
            "torchvision": __import__("torchvision").__version__, "faiss": faiss_version(),
            "python": platform.python_version(), "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "cuda": torch.version.cuda if on_cuda else None,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32 if on_cuda else None,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32 if on_cuda else None,
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
        "settings": dict(vars(args), modes=modes, modes_skipped_cpu=skipped_modes, gallery=n_gallery),
    }
    work = tempfile.mkdtemp(prefix="bct_bench_")
    try:
        root, list_path, n_classes = resolve_data(args, work)
        opts = base_opts(args, device, root, list_path, n_classes, work)
        report["settings"].update({"data_root": root, "classes": n_classes,
                                   "old_classes": opts["OLD_MODEL.NUM_CLASSES"]})
        cfg = make_cfg(opts, {"TRAIN.NUM_WORKERS": args.workers, "USE_AMP": on_cuda})
        if "training" not in args.skip:
            write_fake_old_model(cfg)
            images, labels = preload_batch(cfg, device)
            report["training"] = {}
            for mode in modes:
                print(f"training: {mode}, base + {', '.join(args.methods)} ...", flush=True)
                _section(report, ("training", mode), bench_training, opts, args.methods, mode, images, labels,
                         device, args.iters, args.warmup)
                _save(out_path, report, device)
            first = report["training"].get(modes[0]) if modes else None
            if first and "advbct" in first:
                report["advbct_ratio_mode"] = modes[0]
                report["advbct_ratio"] = first["advbct"]["ratio_to_base"]
                report["advbct_ratio_min"] = first["advbct"]["ratio_of_minima"]
            del images, labels
        if "loading" not in args.skip:
            print("data loading ...", flush=True)
            _section(report, ("data_loading",), bench_loading, cfg, args.repeats)
            _save(out_path, report, device)
        if "extraction" not in args.skip:
            print("extraction ...", flush=True)
            _section(report, ("extraction",), bench_extraction, cfg, device, args.workers, args.repeats)
            _save(out_path, report, device)
        if "search" not in args.skip:
            print("search ...", flush=True)
            _section(report, ("search",), bench_search, n_gallery, args.queries, args.topk, cfg.MODEL.EMB_DIM,
                     args.repeats, args.threads)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _save(out_path, report, device)
    print_table(report)
    print(f"written {out_path}")
    if report.get("errors"):
        raise SectionError(f"{len(report['errors'])} section(s) failed ({', '.join(report['errors'])}); "
                           f"the messages are under 'errors' in {out_path}")
    return report


def _main_exit(argv=None):
    try:
        return main(argv)
    except SectionError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run(_main_exit)
