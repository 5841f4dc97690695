"""Training loop, trainers, checkpointing and distributed set-up (SPEC.md §3, §5; DESIGN.md)."""
