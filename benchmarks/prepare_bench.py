"""Time bct.data.collection.prepare_collection (python -m bct.tools.prepare_images) on a generated
collection of tiny files, as a folder per class and as a CSV (docs/benchmarks.md).

    python benchmarks/prepare_bench.py [--images 100000] [--classes 1000] [--work DIR] [--repeat 3]

The files hold 32 bytes each (the preparation reads no pixels, only names and sizes), so the figure
is the cost of listing, checking and splitting, not of reading images. Each form is timed cold
(first preparation into a new folder) and warm (the reuse check of the same preparation); the best
of --repeat runs is reported, and the generated folder is removed at the end unless --keep.
"""
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bct.data.collection import Settings, prepare_collection  # noqa: E402
from bct.tools.common import count, existing_dir, run, script_parser  # noqa: E402


def make_collection(root: str, images: int, classes: int) -> str:
    """<root>/coll/class_XXXX/img_XXXXXX.jpg (32-byte files) and <root>/coll.csv; returns the folder."""
    folder = os.path.join(root, "coll")
    payload = b"\xff\xd8" + b"\0" * 30
    rows = ["path,label\n"]
    for c in range(classes):
        os.makedirs(os.path.join(folder, f"class_{c:05d}"))
    for i in range(images):
        rel = f"class_{i % classes:05d}/img_{i:07d}.jpg"
        with open(os.path.join(folder, rel), "wb") as f:
            f.write(payload)
        rows.append(f"{rel},class_{i % classes:05d}\n")
    with open(os.path.join(folder, "..", "coll.csv"), "w") as f:
        f.writelines(rows)
    return folder


def time_one(src: str, out: str, image_root: str = None) -> tuple:
    t0 = time.perf_counter()
    m = prepare_collection(src, out, Settings(), image_root=image_root)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = prepare_collection(src, out, Settings(), image_root=image_root)
    warm = time.perf_counter() - t0
    assert not m["reused"] and again["reused"]
    return cold, warm, m["counts"]


def build_parser():
    p = script_parser(__file__, __doc__)
    p.add_argument("--images", type=count, default=100000)
    p.add_argument("--classes", type=count, default=1000)
    p.add_argument("--work", default=None, type=existing_dir, help="folder for the generated collection (default: a temporary folder)")
    p.add_argument("--repeat", type=count, default=3)
    p.add_argument("--keep", action="store_true")
    return p


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    work = tempfile.mkdtemp(prefix="prepare_bench_", dir=args.work)
    try:
        t0 = time.perf_counter()
        folder = make_collection(work, args.images, args.classes)
        print(f"generated {args.images} files in {args.classes} class folders under {work} "
              f"in {time.perf_counter() - t0:.1f} s")
        csv_path = os.path.join(work, "coll.csv")
        for kind, src, root in (("folder", folder, None), ("csv", csv_path, folder)):
            best = None
            for r in range(args.repeat):
                out = os.path.join(work, f"out_{kind}_{r}")
                cold, warm, counts = time_one(src, out, root)
                best = (cold, warm) if best is None else (min(best[0], cold), min(best[1], warm))
                shutil.rmtree(out)
            print(f"{kind:6s}: prepare {best[0]:.2f} s, reuse check {best[1]:.2f} s (best of {args.repeat}); "
                  f"{counts['train_images']} training images, {counts['old_images']} old, "
                  f"{counts['queries']} queries, {counts['gallery']} gallery")
        print(f"cpus: {os.cpu_count()} visible, {len(os.sched_getaffinity(0))} usable; python {sys.version.split()[0]}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    run(main)
