"""Small helpers shared by every stage: errors, distributed communication, logging, file I/O."""
