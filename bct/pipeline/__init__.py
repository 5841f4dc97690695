"""Runs as library calls, on config objects (never argv): train a run, class statistics, the shared
pretrained start, evaluate checkpoints on benchmark sets, compare methods over seeds, model
generations, compatibility matrices, summaries of results, checkpoint conversion and export.
The command-line tools (bct.tools) are argparse -> one of these calls -> print.

Names are resolved on first use, so `import bct.pipeline` imports neither torch nor the modules a
caller does not use.
"""
import importlib

_WHERE = {
    "train_run": "train", "RunResult": "train",
    "class_stats": "stats",
    "pretrained_start": "pretrained",
    "training_inputs": "records", "training_record": "records",
    "evaluate": "evaluation", "load_for_eval": "evaluation",
    "parse_sets": "catalog", "method_names": "catalog", "method_title": "catalog",
    "compare": "comparison",
    "generations": "chains",
    "matrix_report": "matrix", "FILES": "matrix",
    "write_matrix_report": ("matrix", "write_report"),
    "load_results": "results", "paper_table": "results", "summary_table": "results", "SUMMARY_TITLE": "results",
    "refuse_other_models_result": "results", "write_result": "results", "load_rankings": "results",
    "write_report_page": "report_page", "write_search_page": "report_page",
    "convert_checkpoint": ("checkpoints", "convert"), "write_untrained": "checkpoints",
    "export_model": "export",
    "derive": "configs",
}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name not in _WHERE:
        raise AttributeError(f"module 'bct.pipeline' has no attribute {name!r}")
    module, attr = _WHERE[name] if isinstance(_WHERE[name], tuple) else (_WHERE[name], name)
    return getattr(importlib.import_module(f"bct.pipeline.{module}"), attr)
