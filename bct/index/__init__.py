"""A gallery index on disk whose rows know which model embedded them (docs/deploying.md).

`Index.build` embeds a gallery with a model (one process or torchrun), `Index.open` maps it,
`search` finds the top-k rows with any compatible model, `backfill` re-embeds rows with a new model
step by step (resumable, searchable meanwhile), `transform` serves a FastFill transformation's
estimates on the old rows first, `status` / `rollback` / `prune` report and undo.
The reading side (open, search with vectors, status) imports neither torch nor the models.
"""
from bct.index.layout import FORMAT_NAME, FORMAT_VERSION
from bct.index.orders import ORDERS
from bct.index.store import Index, SearchResult

__all__ = ["Index", "SearchResult", "ORDERS", "FORMAT_NAME", "FORMAT_VERSION"]
