"""Write the GLDv2 training lists, class / data splits and retrieval lists (Dataset.md).

    python -m bct.tools.prepare_gldv2 --root ./data/GLDv2 [--ratio 0.3] [--seed 666] [--label-file PATH]
                                      [--fractions 0.3,0.6,1.0]

Reads train_clean.csv (or --label-file), and index.csv + retrieval_solution_v2.1.csv when present,
from --root; writes the lists (gldv2_*.txt) and manifest.json there. See Dataset.md.
"""
import os

from bct.data.prepare import prepare_gldv2
from bct.tools.common import csv_list, existing_dir, existing_file, fraction, open_fraction, parser, refuse_overlap, run, seed


def build_parser():
    p = parser(__file__, __doc__)
    p.add_argument("--root", required=True, type=existing_dir,
                   help="GLDv2 folder holding train_clean.csv (and index.csv, retrieval_solution_v2.1.csv); the "
                        "lists are written there")
    p.add_argument("--ratio", type=open_fraction, default=None,
                   help="fraction of the classes (class split) and of each class's images (data split) "
                        "given to the old model (default 0.3, or the first of --fractions)")
    p.add_argument("--seed", type=seed, default=666,
                   help="seed of the class shuffle; class i of the data split uses seed + i")
    p.add_argument("--label-file", default=None, type=existing_file,
                   help="existing `train/a/b/c/<id>.jpg label` list (e.g. the community label_81313.txt) "
                        "used instead of train_clean.csv")
    p.add_argument("--fractions", type=csv_list(fraction), default=None,
                   help="growing fractions of a chain of model generations, e.g. 0.3,0.6,1.0: also write "
                        "the nested class and data splits gldv2_train_nested_<P>percent_{class,data}.txt")
    return p


def _main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    label = args.label_file
    if label and (os.path.basename(label).startswith("gldv2_") or os.path.basename(label) == "manifest.json"):
        # The lists this tool writes into --root are named so: one of them may not be the input.
        refuse_overlap([("the list written into --root", os.path.join(args.root, os.path.basename(label)))],
                       [("the input of --label-file", label)])
    manifest = prepare_gldv2(args.root, ratio=args.ratio, seed=args.seed, label_file=label,
                             fractions=tuple(args.fractions) if args.fractions else None)
    counts = manifest["counts"]
    print(f"GLDv2 lists written to {args.root} (source {manifest['source']}, ratio {manifest['ratio']}, "
          f"seed {args.seed})")
    print(f"  classes {counts['classes']} (old {counts['old_classes']}, new {counts['new_classes']}), "
          f"training images {counts['train_images']}")
    for tag, n in counts.get("nested", {}).items():
        print(f"  nested split {tag}%: {n['classes']} classes, {n['class_images']} class-split and "
              f"{n['data_images']} data-split images")
    for name, record in manifest["files"].items():
        print(f"  {name:42s} {record['lines']:>9d} lines")
    if "gallery_images" not in counts:
        print("  retrieval lists skipped: put index.csv and retrieval_solution_v2.1.csv in the root to get them")
    print("  line counts and sha256 of every file: manifest.json")
    return manifest


def main(argv=None) -> dict:
    """The tool as the command line runs it: a refused input or an OS error is one line on stderr
    and SystemExit(2)."""
    return run(_main, argv)


if __name__ == "__main__":
    main()
