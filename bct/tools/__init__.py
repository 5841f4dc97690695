"""Entry points: python -m bct.tools.<name> --cfg FILE [--resume] KEY VALUE ..."""
