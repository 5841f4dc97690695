"""Write a resized copy of the images of a list, once, so that training decodes small files.

    python -m bct.tools.resize_images --list L --root R --out DIR (--max-side N | --min-side N)
        [--quality 90] [--workers N]

Every image of list L (``relative/path label`` lines, paths relative to R) is written to
DIR/relative/path as an RGB JPEG whose longer (--max-side) or shorter (--min-side) side is N pixels,
aspect ratio kept; smaller images are copied unchanged. Point TRAIN.ROOT at DIR and keep the same
list. Runs over all cores with a progress bar; a killed run continues where it stopped when started
again with the same arguments (Ctrl-C or SIGTERM stop the workers too). DIR/resize_manifest.json
records the settings, the list's sha256 and the counts. See docs/data_loading.md.
"""
import os

from bct.data.resize_copy import resize_list
from bct.tools.common import existing_dir, existing_file, integer, output_dir, parser, positive_int, run


def build_parser():
    p = parser(__file__, __doc__)
    p.add_argument("--list", required=True, type=existing_file, help="image list ('relative/path label' lines)")
    p.add_argument("--root", required=True, type=existing_dir, help="folder the list paths are relative to")
    p.add_argument("--out", required=True, type=output_dir, help="folder receiving the copy (new, empty, or an "
                   "earlier run's)")
    side = p.add_mutually_exclusive_group(required=True)
    side.add_argument("--max-side", type=positive_int, help="longer side of the copies, in pixels (e.g. 256)")
    side.add_argument("--min-side", type=positive_int, help="shorter side of the copies, in pixels (e.g. 224: a "
                      "224 px squash never upsamples)")
    p.add_argument("--quality", type=integer(1, 100, "JPEG quality 1..100"), default=90, help="JPEG quality of the resized files (1-100)")
    p.add_argument("--workers", type=positive_int, default=os.cpu_count() or 1, help="processes (default: one per core)")
    return p


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    mode, size = ("max_side", args.max_side) if args.max_side is not None else ("min_side", args.min_side)
    manifest = resize_list(args.list, args.root, args.out, size, mode, args.quality, args.workers)
    mb = manifest["bytes"] / 2**20
    print(f"{manifest['images']} images in {manifest['seconds']:.1f} s: {manifest['resized']} resized, "
          f"{manifest['copied']} copied unchanged, {manifest['present']} already there; {mb:.1f} MiB in "
          f"{args.out} (TRAIN.ROOT {args.out})")
    return manifest


if __name__ == "__main__":
    run(main)
