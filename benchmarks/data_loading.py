"""Data-loading benchmark: how fast image files become training batches, per pipeline, and how many
CPU cores keep one training device busy (a script, not a test; see docs/benchmarks.md).

    python benchmarks/data_loading.py [--images 200] [--width 1024] [--height 768] [--quality 90]
        [--size 224] [--max-side 256] [--rounds 5] [--chunk 40] [--workers N ...] [--batch 64]
        [--archs resnet18 resnet50] [--step-batch B] [--iters N] [--warmup N]
        [--device auto|cpu|cuda] [--data DIR] [--out FILE]

Makes --images textured photos (1/f noise with a few flat blocks, JPEG quality 90, about 200 KB
at 1024 x 768 like a camera photo of that size) in a temporary folder (or --data DIR, reused
next time), a resized copy of them with bct.tools.resize_images' code, and measures:

- per core (this process, one torch thread): images/s of the dataset items (decode + transform to
  --size) of the plain PIL path (the reference's), the fast path, and both on the resized copy;
  also the augmented variants. The pipelines take turns on the same images round after round, and
  "x plain" is the median over rounds of (plain time / pipeline time): a ratio measured seconds
  apart, steady on a shared machine;
- with N DataLoader workers: images/s of whole batches;
- GPU decoding (CUDA only): the batch decoder alone on bytes already in memory, and with N workers
  reading the files;
- the training step of each --archs model at --size on the device (bct.engine.trainer.Trainer.step
  on a pre-loaded batch; AMP + channels_last on CUDA), and from it the cores that one device needs:
  step images/s divided by the per-core images/s of each pipeline.
"""
import os
import sys
import shutil
import statistics
import tempfile
import time

import numpy as np
import torch

if __package__ in (None, ""):  # run as `python benchmarks/data_loading.py`: the repository root holds bct
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bct.data.datasets import ImageListDataset
from bct.data.gpu_decode import BatchDecoder, gpu_decoding_available, raw_collate
from bct.data.lists import read_image_list
from bct.data.resize_copy import resize_list
from bct.data.transforms import build_transform
from bct.engine.distributed import resolve_device
from benchmarks.images import make_images
from benchmarks.speed import bench_training, device_name
from bct.tools.common import count, integer, nonneg_int, output_file, run, script_parser, text, work_dir
from bct.utils.errors import BadInputError
from bct.utils.fileio import write_json_atomic
from bct.utils.logger import setup_logger

LIST_NAME = "photos_list.txt"
# name: (image folder: "source" or "copy", fast path, augment)
PIPELINES = {
    "plain": ("source", False, False),
    "fast": ("source", True, False),
    "copy_plain": ("copy", False, False),
    "copy_fast": ("copy", True, False),
    "plain_augment": ("source", False, True),
    "fast_augment": ("source", True, True),
}
TITLES = {
    "plain": "plain PIL (reference path)", "fast": "fast path (draft + uint8 tensors)",
    "copy_plain": "resized copy, plain PIL", "copy_fast": "resized copy, fast path",
    "plain_augment": "plain PIL + augment", "fast_augment": "fast path + augment",
    "gpu": "GPU decoding", "copy_gpu": "resized copy, GPU decoding",
}
# GLDv2 classes of the new model: its classifier is part of every training step.
GLDV2_CLASSES = 81313


def build_parser():
    p = script_parser(__file__, __doc__)
    p.add_argument("--images", type=count, default=200, help="photos generated")
    p.add_argument("--width", type=count, default=1024, help="photo width")
    p.add_argument("--height", type=count, default=768, help="photo height")
    p.add_argument("--quality", type=integer(1, 100, "JPEG quality 1..100"), default=90,
                   help="JPEG quality of the photos and of the resized copy")
    p.add_argument("--size", type=count, default=224, help="network input side")
    p.add_argument("--max-side", type=count, default=256, help="longer side of the resized copy")
    p.add_argument("--rounds", type=count, default=5, help="timed rounds of the per-core comparison")
    p.add_argument("--chunk", type=count, default=40, help="images per pipeline and round")
    p.add_argument("--workers", type=nonneg_int, nargs="+", default=[os.cpu_count() or 1],
                   help="DataLoader worker counts to measure (default: one per core)")
    p.add_argument("--batch", type=count, default=64, help="DataLoader and GPU-decoding batch")
    p.add_argument("--archs", type=text, nargs="*", default=["resnet18", "resnet50"], help="training steps to time")
    p.add_argument("--step-batch", type=count, default=None, help="training-step batch (default 128 on CUDA, 8 on CPU)")
    p.add_argument("--iters", type=count, default=None, help="timed training steps (default 20 on CUDA, 2 on CPU)")
    p.add_argument("--warmup", type=nonneg_int, default=None, help="untimed training steps (default 5 on CUDA, 1 on CPU)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--data", default="", type=work_dir, help="folder for the photos and their copy, reused when it holds them "
                   "(default: a temporary folder)")
    p.add_argument("--out", default="", type=output_file, help="JSON report (default output/benchmarks/data_<device>.json)")
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def prepare_data(args, work: str):
    """(folder, list path, copy folder, resize report): photos generated or reused, copy made or reused."""
    folder = args.data or os.path.join(work, "data")
    list_path = os.path.join(folder, LIST_NAME)
    if not os.path.isfile(list_path):
        if os.path.isdir(folder) and os.listdir(folder):
            raise BadInputError(f"--data {folder}: a non-empty folder without {LIST_NAME}; give an empty, new or "
                                "earlier --data folder")
        t0 = time.perf_counter()
        make_images(folder, args.images, 100, args.width, args.height, args.quality, list_name=LIST_NAME)
        print(f"generated {args.images} photos {args.width} x {args.height} in {time.perf_counter() - t0:.1f} s",
              flush=True)
    copy = os.path.join(folder, f"copy_max{args.max_side}_q{args.quality}")
    workers = os.cpu_count() or 1
    manifest = resize_list(list_path, folder, copy, args.max_side, "max_side", args.quality, workers,
                           progress=False)
    made = manifest["resized"] + manifest["copied"]
    paths, _ = read_image_list(list_path, folder)
    source_bytes = sum(os.path.getsize(os.path.join(folder, p)) for p in paths)
    report = {"images": manifest["images"], "workers": workers, "seconds": manifest["seconds"],
              "made_now": made, "images_per_s": made / manifest["seconds"] if made else None,
              "source_kb_per_image": source_bytes / len(paths) / 1024,
              "copy_kb_per_image": manifest["bytes"] / manifest["images"] / 1024}
    return folder, list_path, copy, report


# -- measurements ---------------------------------------------------------------------------------
def _datasets(folder: str, copy: str, paths, labels, size: int) -> dict:
    return {name: ImageListDataset(folder if where == "source" else copy, paths, labels,
                                   build_transform(size, "squash", augment, fast=fast), list_name=LIST_NAME)
            for name, (where, fast, augment) in PIPELINES.items()}


def per_core(datasets: dict, rounds: int, chunk: int) -> dict:
    """Images/s of dataset items in this process, pipelines taking turns on the same chunk each round."""
    n = len(next(iter(datasets.values())))
    for ds in datasets.values():  # files into the page cache, code paths warmed
        for i in range(min(n, 4)):
            ds[i]
        for i in range(n):
            with open(ds.full_path(i), "rb") as f:
                f.read()
    names = list(datasets)
    times = {name: [] for name in names}
    for r in range(rounds):
        items = [(r * chunk + j) % n for j in range(chunk)]
        for name in names[r % len(names):] + names[:r % len(names)]:
            ds = datasets[name]
            t0 = time.perf_counter()
            for i in items:
                ds[i]
            times[name].append(time.perf_counter() - t0)
    out = {}
    for name in names:
        out[name] = {"images_per_s": chunk / statistics.median(times[name]),
                     "best_images_per_s": chunk / min(times[name]),
                     "x_plain": statistics.median(p / t for p, t in zip(times["plain"], times[name])),
                     "rounds": rounds, "chunk": chunk}
    return out


def _loader_rate(loader, n_images: int, passes: int = 2, decoder=None, device=None) -> float:
    """Images/s of whole passes over `loader` (median of `passes` after one untimed pass)."""
    times = []
    for p in range(passes + 1):
        t0 = time.perf_counter()
        for batch in loader:
            if decoder is not None:
                decoder(batch[0], batch[2])
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
        if p:
            times.append(time.perf_counter() - t0)
    return n_images / statistics.median(times)


def with_workers(datasets: dict, workers, batch: int) -> dict:
    """Images/s of a DataLoader with N workers for the plain, fast and resized-copy pipelines."""
    out = {}
    for n_workers in workers:
        row = {}
        for name in ("plain", "fast", "copy_fast"):
            ds = datasets[name]
            loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=n_workers,
                                                 persistent_workers=n_workers > 0)
            row[name] = _loader_rate(loader, len(ds))
            del loader
        out[str(n_workers)] = row
    return out


def gpu_decoding(folder: str, copy: str, paths, labels, size: int, batch: int, workers, device) -> dict:
    """Images/s of GPU decoding: the decoder on bytes in memory, and fed by N workers reading files."""
    out = {}
    for name, root in (("gpu", folder), ("copy_gpu", copy)):
        ds = ImageListDataset(root, paths, labels, build_transform(size, fast=True), list_name=LIST_NAME,
                              gpu_decode=True)
        decoder = BatchDecoder(ds, device)
        batches = [raw_collate([ds[i] for i in range(s, min(s + batch, len(ds)))]) for s in range(0, len(ds), batch)]
        times = []
        for p in range(4):
            torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            for payloads, _, indices, _ in batches:
                decoder(payloads, indices)
            torch.cuda.synchronize(device)
            if p:
                times.append(time.perf_counter() - t0)
        row = {"decoder_only_images_per_s": len(ds) / statistics.median(times), "cpu_fallbacks": decoder.fallbacks}
        for n_workers in workers:
            loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=n_workers, collate_fn=raw_collate,
                                                 persistent_workers=n_workers > 0, pin_memory=True)
            row[f"workers_{n_workers}_images_per_s"] = _loader_rate(loader, len(ds), decoder=decoder, device=device)
            del loader
        out[name] = row
    return out


def training_steps(args, folder: str, list_path: str, device, work: str) -> dict:
    """Images/s of Trainer.step (plain cross-entropy, GLDv2's class count) per architecture."""
    on_cuda = device.type == "cuda"
    batch = args.step_batch or (128 if on_cuda else 8)
    iters = args.iters or (20 if on_cuda else 2)
    warmup = args.warmup if args.warmup is not None else (5 if on_cuda else 1)
    mode = "amp_cl" if on_cuda else "fp32"
    if batch > args.images:
        raise BadInputError(f"--step-batch {batch} needs at least as many --images (got {args.images})")
    out = {"mode": mode, "batch": batch, "iters": iters, "warmup": warmup, "classes": GLDV2_CLASSES}
    for arch in args.archs:
        opts = {"DEVICE": device.type, "OUTPUT": os.path.join(work, "output"), "TAG": "benchmark_data",
                "TRAIN.ROOT": folder, "TRAIN.LIST_FILE": list_path, "TRAIN.BATCH_SIZE": batch,
                "TRAIN.INPUT_SIZE": args.size, "TRAIN.NUM_WORKERS": 0, "TRAIN.VAL_FREQ": 0,
                "TRAIN.OPTIMIZER.BASE_LR": 1e-4, "NEW_MODEL.ARCH": arch, "NEW_MODEL.PRETRAINED": False,
                "OLD_MODEL.PRETRAINED": False, "NEW_MODEL.NUM_CLASSES": GLDV2_CLASSES}
        gen = torch.Generator().manual_seed(0)
        images = torch.randn(batch, 3, args.size, args.size, generator=gen).to(device)
        labels = torch.randint(0, GLDV2_CLASSES, (batch,), generator=gen).to(device)
        print(f"training step: {arch} ({mode}, batch {batch}) ...", flush=True)
        res = bench_training(opts, [], mode, images, labels, device, iters, warmup)
        out[arch] = {k: res["base"][k] for k in ("median_ms", "min_ms", "images_per_s")}
        del images, labels
    return out


# -- report ---------------------------------------------------------------------------------------
def cores_needed(report: dict) -> dict:
    """{pipeline: {arch: cores}}: per-core images/s that one device's training step consumes."""
    steps = report.get("training_steps", {})
    archs = [a for a in steps if isinstance(steps[a], dict)]
    return {name: {arch: steps[arch]["images_per_s"] / row["images_per_s"] for arch in archs}
            for name, row in report["per_core"].items()}


def print_table(report: dict) -> None:
    env, s = report["environment"], report["settings"]
    photos = report["resized_copy"]
    print(f"\nbct data benchmark: {env['device']} ({env['device_name']}), {env['cpu_count']} CPUs, torch "
          f"{env['torch']}; {s['images']} photos {s['width']} x {s['height']} q{s['quality']} "
          f"({photos['source_kb_per_image']:.0f} KB each) -> {s['size']} x {s['size']}")
    print(f"resized copy (max side {s['max_side']}): {photos['copy_kb_per_image']:.1f} KB per image"
          + (f", made at {photos['images_per_s']:.0f} img/s with {photos['workers']} processes"
             if photos["images_per_s"] else " (reused)"))
    steps = report.get("training_steps", {})
    archs = [a for a in steps if isinstance(steps[a], dict)]
    cores = report.get("cores_per_device", {})
    print(f"per core (median of {s['rounds']} rounds of {s['chunk']} images; x plain = paired median):")
    print(f"  {'pipeline':36s}{'img/s':>8s}{'x plain':>9s}" + "".join(f"{'cores/' + a:>17s}" for a in archs))
    for name, row in report["per_core"].items():
        print(f"  {TITLES[name]:36s}{row['images_per_s']:8.1f}{row['x_plain']:9.2f}"
              + "".join(f"{cores[name][a]:17.1f}" for a in archs))
    for n_workers, row in report.get("workers", {}).items():
        print(f"  {n_workers} workers: " + ", ".join(f"{TITLES[k]} {v:.0f} img/s" for k, v in row.items()))
    for name, row in report.get("gpu_decoding", {}).items():
        fed = ", ".join(f"{k.split('_')[1]} workers {v:.0f} img/s" for k, v in row.items() if k.startswith("workers_"))
        print(f"  {TITLES[name]}: decoder alone {row['decoder_only_images_per_s']:.0f} img/s; {fed}")
    if "gpu_decoding_unavailable" in report:
        print(f"  GPU decoding not measured: {report['gpu_decoding_unavailable']}")
    if archs:
        print(f"training step on {env['device']} ({steps['mode']}, batch {steps['batch']}, {steps['classes']} "
              "classes): " + ", ".join(f"{a} {steps[a]['images_per_s']:.0f} img/s" for a in archs))
    for arch, rows in report.get("bottleneck", {}).items():
        print(f"  {arch}: " + "; ".join(f"{label} -> {r['bottleneck']}" for label, r in rows.items()))


def bottlenecks(report: dict) -> dict:
    """{arch: {loader: {"data_images_per_s", "bottleneck"}}}: which of the loader (with its workers)
    and the training step is slower, for every measured loader."""
    loaders = {f"{TITLES[name]}, {n} workers": rate
               for n, row in report.get("workers", {}).items() for name, rate in row.items()}
    for name, row in report.get("gpu_decoding", {}).items():
        loaders.update({f"{TITLES[name]}, {k.split('_')[1]} workers": v for k, v in row.items()
                        if k.startswith("workers_")})
    steps = report["training_steps"]
    return {arch: {label: {"data_images_per_s": rate,
                           "bottleneck": "data" if rate < steps[arch]["images_per_s"] else "training step"}
                   for label, rate in loaders.items()}
            for arch in steps if isinstance(steps[arch], dict)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    setup_logger("")
    device = resolve_device(args.device)
    torch.set_num_threads(1)
    out_path = args.out or os.path.join("output", "benchmarks", f"data_{device.type}.json")
    report = {
        "environment": {"device": device.type, "device_name": device_name(device), "cpu_count": os.cpu_count(),
                        "torch": torch.__version__, "torchvision": __import__("torchvision").__version__,
                        "pillow": __import__("PIL").__version__, "time": time.strftime("%Y-%m-%d %H:%M:%S")},
        "settings": vars(args),
    }
    work = tempfile.mkdtemp(prefix="bct_data_bench_")
    try:
        folder, list_path, copy, report["resized_copy"] = prepare_data(args, work)
        paths, labels = read_image_list(list_path, folder)
        datasets = _datasets(folder, copy, paths, labels, args.size)
        print("per-core rates ...", flush=True)
        report["per_core"] = per_core(datasets, args.rounds, args.chunk)
        print(f"DataLoader with {', '.join(map(str, args.workers))} workers ...", flush=True)
        report["workers"] = with_workers(datasets, args.workers, args.batch)
        reason = gpu_decoding_available(device)
        if reason:
            report["gpu_decoding_unavailable"] = reason
        else:
            print("GPU decoding ...", flush=True)
            report["gpu_decoding"] = gpu_decoding(folder, copy, paths, labels, args.size, args.batch, args.workers,
                                                  device)
        if args.archs:
            torch.set_num_threads(os.cpu_count() or 1)
            report["training_steps"] = training_steps(args, folder, list_path, device, work)
            report["cores_per_device"] = cores_needed(report)
            report["bottleneck"] = bottlenecks(report)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_json_atomic(out_path, report, indent=1)
    print_table(report)
    print(f"written {out_path}")
    return report


if __name__ == "__main__":
    run(main)
