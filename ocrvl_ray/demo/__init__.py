"""What ``demo_models=true`` and the bundled sample need (production may import it; no test code).

sample.py   the sample pages' template and generator, the bundled font, ``sample_dataset_dir``
models.py   tiny scripted detection models (real paddleocr classes) matching the sample's template
"""
