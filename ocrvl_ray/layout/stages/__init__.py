"""Stages of the layout job (see docs/models.md); each is one ``base.Stage`` class built from its config section.

base.py            Stage (name, resources, reads/writes/drops, batch format, setup, process_batch), check_columns
decode.py          DecodeStage / decode_batch: manifest rows -> status, words, detector input, page hand-off (tasks)
detect_layout.py   LayoutDetectStage: PP-DocLayoutV2 regions with reading order (actor pool)
table_crops.py     TableCropStage: each table cut from a (reduced) page decode for the cell detector (tasks)
detect_cells.py    CellDetectStage: table cells mapped back to page pixels (actor pool)
compose.py         ComposeStage: regions + words -> LMDB sink rows (tasks)
actors.py          detector glue: pool resources, device strings, offline paddlex environment
"""
