"""Training job: erniekit's PaddleOCR-VL LoRA SFT under Ray Train, checkpoints to ``storage_path``.

    ray job submit --working-dir . -- python jobs/train.py run_ocr_vl_sft_16k.yaml \
        num_workers=8 storage_path=s3://bucket/ocrvl ernie_root=/opt/ERNIE [erniekit key=value ...]
    python jobs/train.py config.yaml num_workers=2          # one machine
    .venv-torch/bin/python jobs/train.py engine=transformers model_name_or_path=/models/PaddleOCR-VL-1.5 \
        train_lmdb_paths=/data/train_layout.lmdb output_dir=/data/lora num_workers=2   # PyTorch + PEFT LoRA

Connects to the cluster in ``RAY_ADDRESS`` (set by ``ray job submit``), else starts a local Ray
(``address="local"``). Same arguments and exit codes as ``ocrvl train`` (2 = a one-line config error).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ocrvl_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
