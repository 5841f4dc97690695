"""Training loop, trainers, checkpointing and distributed set-up (docs/method.md)."""
