"""Training engines called in each Ray Train worker (``engine=``): paddleformers (PaddleFormers 1.x)."""
