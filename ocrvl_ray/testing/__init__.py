"""Offline stand-ins for tests, benchmarks and the demo (see docs/models.md).

models.py   tiny PP-DocLayoutV2 / table-cell models that load through the real paddleocr classes
pages.py    synthetic Korean template pages, the bundled sample dataset, bad image files
shards.py   a sharded training LMDB of rendered text crops (train tests)
"""
