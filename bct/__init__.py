"""bct: backward-compatible representation learning for image retrieval (AdvBCT and baselines)."""
__version__ = "0.1.0"
