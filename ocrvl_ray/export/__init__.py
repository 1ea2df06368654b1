"""LoRA merge into a Hugging Face export folder (merge, adapter, st, fix, verify, task).

``DATA``: the real PaddleOCR-VL files the exports and the tiny models are checked against and built from
(``paddleocr-vl.config.json``, ``paddleocr-vl.preprocessor_config.json``, ``paddleocr-vl.base_keys.tsv``).
"""
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
