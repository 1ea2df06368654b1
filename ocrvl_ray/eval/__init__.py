"""``ocrvl eval``: batch inference of one or more models on an LMDB, NFC CER/NED per slice, paired bootstrap.

metrics/compare/predictions/score/report are pure and import neither Ray nor Paddle (``ocrvl eval score``
starts fast); data/models/engines/run hold the Ray and model glue.
"""
