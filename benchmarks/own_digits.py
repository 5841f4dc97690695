"""The own-images command on a real labelled set that ships inside a wheel: the UCI handwritten
digits of scikit-learn (sklearn.datasets.load_digits: 1,797 8x8 images, 10 classes, no download).

    python benchmarks/own_digits.py --name NAME [--env START=old ...] [KEY VALUE ...]

writes the digits as a folder per class (PNG) under output/own_digits_src/digits (once), runs
``PRETRAINED=False bash scripts/own.sh <that folder> NAME [KEY VALUE ...]`` with the --env variables,
and records the run in docs/results/own_images.json: the settings, the old self / new self / cross
mAP, the wall time and the load average at the start and the end (the machine may be shared).
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
RESULTS = os.path.join(REPO, "docs", "results", "own_images.json")


def write_digits(folder: str) -> str:
    """<folder>/<digit>/<index>.png of the 1,797 digits, grey levels 0..16 scaled to 0..255."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    done = os.path.join(folder, ".complete")
    if os.path.isfile(done):
        return folder
    d = load_digits()
    for i, (image, label) in enumerate(zip(d.images, d.target)):
        os.makedirs(os.path.join(folder, str(label)), exist_ok=True)
        Image.fromarray((image * 255 / 16).astype(np.uint8)).save(os.path.join(folder, str(label), f"{i:04d}.png"))
    open(done, "w").close()
    return folder


def record(entry: dict, path: str = RESULTS) -> None:
    data = {"runs": []}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    data["runs"] = [r for r in data["runs"] if r["name"] != entry["name"]] + [entry]
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.replace(path + ".tmp", path)


def build_parser():
    ap = script_parser(__file__, __doc__)
    ap.add_argument("--name", required=True, type=text, help="the run's name (output/own/<name>, the row of the table)")
    ap.add_argument("--env", action="append", default=[], type=text, help="VAR=VALUE for scripts/own.sh (e.g. START=random)")
    ap.add_argument("--note", default="", type=text, help="what the run changes, for the table")
    add_overrides(ap)
    return ap


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    args.opts = overrides(args.opts)
    for e in args.env:
        if "=" not in e:
            raise BadInputError(f"--env {e!r} is not VAR=VALUE (e.g. START=random)")
    src = write_digits(os.path.join(REPO, "output", "own_digits_src", "digits"))
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
    record({"name": args.name, "note": args.note, "env": dict(e.split("=", 1) for e in args.env), "opts": args.opts,
            "split": prep["split"], "query": prep["held"], "old_self": head["old_self"], "self": head["self"],
            "cross": head["cross"], "seconds": round(seconds), "load": [round(load0[0], 1), round(os.getloadavg()[0], 1)],
            "cores": os.cpu_count()})
    print(f"recorded {args.name} in {os.path.relpath(RESULTS, REPO)}")


if __name__ == "__main__":
    run(main)
