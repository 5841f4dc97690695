"""Speed and data-loading benchmark scripts of bct (not part of the installed package)."""
