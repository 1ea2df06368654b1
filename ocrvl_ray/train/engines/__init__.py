"""Training engines (``engine=``) and what one trainer needs beyond the generic wrapper: erniekit.py (the
user's erniekit fork: pre-flight against its own argument classes), paddleformers.py (PaddleFormers 1.x), transformers/ (PyTorch + PEFT, TorchTrainer)."""
