"""Turn a labelled image collection into training lists, an old-model split and a retrieval set.

    python -m bct.tools.prepare_images --src <folder per class | CSV of path,label[,split]> --out <dir>
        [--split auto|class|data] [--old-fraction 0.3] [--query auto|classes|images] [--eval-fraction 0.2]
        [--query-fraction 0.5] [--seed 666] [--check-decode] [--skip-singletons] [--image-root DIR]

Writes <out>/classes.txt, train_old.txt (old model), train_full.txt (new model), eval/ (the retrieval
set: query.txt, gallery.txt, set.json) and manifest.json; the formats and the split rules are in
docs/own_images.md. The same input and settings again reuse <out>; anything else is refused.
"""
import argparse

from bct.data.collection import MIN_CLASSES, Settings, prepare_collection
from bct.tools import common
from bct.tools.common import run


def build_parser():
    d = Settings()
    p = common.parser(__file__, __doc__)
    p.add_argument("--src", required=True, type=common.existing_path,
                   help="a folder per class (<src>/<class>/<image>) or a CSV with a header path,label[,split]")
    p.add_argument("--out", required=True, type=common.output_dir, help="folder to write (must be new, empty, or this very preparation)")
    p.add_argument("--split", choices=("auto", "class", "data"), default=d.split,
                   help="old-model split: class (a seeded fraction of the training classes, as GLDv2's class split), "
                        "data (a seeded fraction of each class's images, as GLDv2's data split) or auto (class when "
                        f"it gives the old model at least {MIN_CLASSES} classes, else data; the default)")
    p.add_argument("--old-fraction", type=common.open_fraction, default=d.old_fraction,
                   help=f"fraction given to the old model (default {d.old_fraction})")
    p.add_argument("--query", dest="held", choices=("auto", "classes", "images"), default=d.held,
                   help="what the retrieval set holds out of training: whole classes, images of every class, or auto "
                        f"(classes when that leaves {MIN_CLASSES} classes to test and {MIN_CLASSES} to the old model, "
                        "else images; the default); a CSV split column overrides them")
    p.add_argument("--eval-fraction", type=common.open_fraction, default=d.eval_fraction,
                   help=f"fraction of the classes (or of each class's images) held out (default {d.eval_fraction})")
    p.add_argument("--query-fraction", type=common.open_fraction, default=d.query_fraction,
                   help="fraction of each held-out class's images used as queries, at least one, the others "
                        f"are the gallery (default {d.query_fraction})")
    p.add_argument("--seed", type=common.seed, default=d.seed, help=f"seed of every shuffle (default {d.seed})")
    p.add_argument("--check-decode", action="store_true",
                   help="decode every image and refuse undecodable files and identical copies (reads every file)")
    p.add_argument("--skip-singletons", action="store_true",
                   help="leave out classes of one image (counted) instead of refusing them")
    p.add_argument("--image-root", default=None, type=common.existing_dir,
                   help="folder the CSV paths are relative to (default: the CSV's folder)")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def report_lines(m: dict, out: str) -> list:
    s, i, c = m["settings"], m["input"], m["counts"]
    extra = []
    if i["ignored_files"]:
        extra.append(f"{i['ignored_files']} non-image or hidden files ignored")
    if i["skipped_singleton_classes"]:
        extra.append(f"{i['skipped_singleton_classes']} one-image classes left out")
    held = ("the CSV's split column" if i["split_column"]
            else f"held-out {s['held']}, --eval-fraction {s['eval_fraction']:g}")
    lines = [
        f"{'reusing' if m['reused'] else 'prepared'} {out} from {i['source']} ({i['kind']}: {i['images']} images in "
        f"{i['classes']} classes{'; ' + ', '.join(extra) if extra else ''})",
        f"  settings: --split {s['split']} --old-fraction {s['old_fraction']:g} --query {s['held']} "
        f"--eval-fraction {s['eval_fraction']:g} --query-fraction {s['query_fraction']:g} --seed {s['seed']}"
        f"{' --check-decode' if s['check_decode'] else ''}{' --skip-singletons' if s['skip_singletons'] else ''}",
        f"  {m['choice']}",
        f"  old model  train_old.txt : {c['old_images']:>8d} images, {c['old_classes']} classes",
        f"  new model  train_full.txt: {c['train_images']:>8d} images, {c['train_classes']} classes",
        f"  retrieval  eval/         : {c['queries']:>8d} queries, {c['gallery']} gallery images, "
        f"{c['eval_classes']} classes ({held})",
        f"  image root {m['train']['root']}; class ids in classes.txt; sha256 of every file in manifest.json",
    ]
    return lines


def _main(argv=None) -> dict:
    args = parse_args(argv)
    settings = Settings(split=args.split, old_fraction=args.old_fraction, held=args.held,
                        eval_fraction=args.eval_fraction, query_fraction=args.query_fraction, seed=args.seed,
                        check_decode=args.check_decode, skip_singletons=args.skip_singletons)
    manifest = prepare_collection(args.src, args.out, settings, image_root=args.image_root)
    print("\n".join(report_lines(manifest, args.out)))
    return manifest


def main(argv=None) -> dict:
    """The tool as the command line runs it: a refused input is one `error:` line and exit 2."""
    return run(_main, argv)


if __name__ == "__main__":
    main()
