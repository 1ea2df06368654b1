"""Fixtures for tests and benches only; nothing outside ``tests/`` and ``bench/`` imports this package.

images.py   unusual and bad image files (decode tests)
models.py   a random-weight PP-DocLayoutV2 with the real architecture (realistic compute)
sink.py     synthetic LMDB sink rows
export.py   tiny PaddleOCR-VL-shaped base models and LoRA adapters (safetensors)
train.py    tiny LoRA fine-tune and all-reduce entries for Ray Train tests
shards.py   a sharded training LMDB of rendered text crops (train tests)
"""
