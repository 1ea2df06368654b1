"""Detection stages of the layout job (see docs/models.md).

decode.py   decode_batch: manifest rows -> status, words, detector input, page image hand-off (Ray tasks)
layout.py   LayoutDetector: PP-DocLayoutV2 regions with reading order (actor UDF)
cells.py    CellDetector: table cells mapped back to page pixels (actor UDF)
actors.py   actor_pool_args, resolve_device, offline paddlex environment
"""
