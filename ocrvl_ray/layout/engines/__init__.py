"""Detector engines other than paddleocr's (``layout.engine=transformers``).

transformers_detector.py  PP-DocLayoutV2/V3/V4 on Hugging Face transformers (torch), CPU or CUDA, fp32 or bf16
configs.py                the models' configs at full or tiny size (random weights; tests, bench/gpu_check.py)
convert.py                a Paddle PP-DocLayout folder -> a transformers folder (``ocrvl convert-detector``)

Nothing here imports Ray or Paddle at module level: bench/gpu_check.py runs these modules on a bare CUDA
machine that has only torch and transformers.
"""
