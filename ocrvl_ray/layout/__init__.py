"""The layout job: manifest -> ``*_layout.lmdb``.

job.py     builds and runs the Ray Data graph, writes the run report
config.py  LayoutConfig (detector pools, recipes, hand-off, LMDB options)
stages/    decode, detect_layout, table_crops, detect_cells, compose: Ray wrappers that each declare their resources
compose/   pure geometry, reading order, masking and rendering (no Ray, no Paddle)
sink/      the exactly-once LMDB datasink, writer, erniekit-compatible reader and verification
"""
