"""The report page of a test or a comparison: query by query, what the old model, the new model and the
new model against the old gallery retrieve, next to the headline numbers and the plots (a static
HTML page with its thumbnails beside it; docs/evaluation.md, "The report page").

    python -m bct.tools.report FOLDER [--queries N] [--top K] [--seed S] --out DIR

FOLDER is a results folder of bct.tools.test (scripts/test.sh, demo.sh, own.sh: <set>.json with
<set>.rankings.npz) or a comparison folder of bct.tools.compare (results.json). Per set the page
shows N queries: those the upgrade helped most and hurt most (AP of the cross-test minus AP of the
old self-test), then random ones drawn with --seed; each with the top K of every ranking. DIR gets
index.html, thumbs/, plots/ and page.json; writing the page again into DIR reuses its thumbnails.
Prints the page's path.
"""
from bct.pipeline.report_page import write_report_page
from bct.tools.common import count, existing_dir, integer, output_dir, parser, run, seed


def build_parser():
    p = parser(__file__, __doc__)
    p.add_argument("folder", type=existing_dir, help="results folder (bct.tools.test) or comparison folder")
    p.add_argument("--queries", type=count, default=9, help="queries shown per set (default 9)")
    p.add_argument("--top", type=integer(1, 100, "count 1..100"), default=None,
                   help="results shown per ranking (default 10, or fewer for a smaller gallery; at most 100)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the random queries (default 0)")
    p.add_argument("--out", required=True, type=output_dir, help="folder of the page")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    page = write_report_page(args.folder, args.out, args.queries, args.top, args.seed)
    print(page)
    return page


if __name__ == "__main__":
    run(main)
