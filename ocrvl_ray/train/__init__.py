"""Training: erniekit's PaddleOCR-VL LoRA SFT under Ray Train v2 (``ocrvl train``, ``jobs/train.py``).
Tiny example entries for tests live in ``ocrvl_ray.testing.train``.

  config.py       erniekit's YAML + key=value parsing, our keys (TrainConfig)
  preflight.py    audit before start: LMDBs, shards per rank, output_dir, LoRA targets

  rank_data.py    a rank's train_lmdb_paths/train_lmdb_prob, set before any entry runs
  engines/        engine-specific pre-flight (erniekit.py: the user's fork's config traps)
  run.py          driver: DataParallelTrainer with the Paddle backend, fit()
  backend.py      PaddleConfig/PaddleBackend: collective env on every worker (in-process / launcher)
  worker.py       per-worker loop: restore, run the entry, report checkpoints and metrics
  checkpoints.py  checkpoint-N folders on disk: finished?, stage, restore, metrics (no Ray, no Paddle)
  entries.py      the erniekit in-process entry, entry loading, the launcher command
  child.py        launcher mode: each launched process takes its shards and runs the entry
  callbacks.py    metrics_log: JSONL of reports and failures (controller side)
  console.py      the console of a fit: our lines on the terminal, the rest in <output_dir>.log
  engines/        paddleformers.py (engine=paddleformers, PaddleFormers 1.x) + lmdb_plugin.py (its data hook)
  engines/transformers/  engine=transformers: PyTorch + PEFT LoRA under TorchTrainer (.venv-torch; output contract
                  in its __init__)
"""
