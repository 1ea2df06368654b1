"""Stages of the layout job (see docs/models.md); each module declares ``resources(cfg)`` once.

decode.py          decode_stage / decode_batch: manifest rows -> status, words, detector input, page hand-off (tasks)
detect_layout.py   LayoutDetector: PP-DocLayoutV2 regions with reading order (actor pool)
table_crops.py     table_crops_stage: each table cut from a (reduced) page decode for the cell detector (tasks)
detect_cells.py    CellDetector: table cells mapped back to page pixels (actor pool)
compose.py         compose_stage: regions + words -> LMDB sink rows (tasks)
actors.py          detector glue: pool resources, device strings, offline paddlex environment
"""
