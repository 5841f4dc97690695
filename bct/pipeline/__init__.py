"""Runs as library calls, on config objects (never argv): train a run (train), class statistics
(stats), the shared pretrained start (pretrained), evaluate checkpoints on benchmark sets
(evaluation), compare methods over seeds (comparison), model generations (chains), compatibility
matrices (matrix), summaries of results (results), checkpoint conversion (checkpoints) and export
(export); records keys reused results. The command-line tools (bct.tools) are argparse -> one of these
calls -> print. Callers import the module that does the work; `import bct.pipeline` imports nothing.
"""
