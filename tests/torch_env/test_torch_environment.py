""".venv-torch: its whole dependency set imports together, without Paddle; the engine modules import neither
Ray nor Paddle (bench/gpu_check.py runs them on a machine that has only torch and transformers)."""
import subprocess
import sys


def _run(code: str) -> str:
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_whole_set_imports_together_without_paddle():
    out = _run("""
import importlib.util
import numpy, pyarrow, pyarrow.parquet, ray, ray.data, cv2, lmdb, yaml, pydantic, PIL, scipy, safetensors, omegaconf
import rapidfuzz, torch, torchvision, transformers, peft, accelerate
import ray.train.torch                       # the transformers training engine: TorchTrainer + PEFT LoRA
from torchvision.ops import nms            # PyPI torchvision only loads its ops next to the torch it was built for
from peft import LoraConfig, get_peft_model
from transformers import (PaddleOCRVLForConditionalGeneration, PPDocLayoutV2ForObjectDetection, PPDocLayoutV3ForObjectDetection,
                          PPDocLayoutV4ForObjectDetection, PPDocLayoutV2ImageProcessor)
PPDocLayoutV2ImageProcessor()               # needs torchvision
assert nms(torch.tensor([[0., 0, 2, 2], [0, 0, 2, 2.1]]), torch.tensor([1., .5]), .5).tolist() == [0]
assert pyarrow.table({'a': numpy.arange(3)}).num_rows == 3
assert importlib.util.find_spec('paddle') is None and importlib.util.find_spec('paddleocr') is None
print(torch.__version__, torchvision.__version__, transformers.__version__)
""")
    assert out.startswith("2.14.1"), out


def test_engine_modules_import_no_ray_no_paddle():
    out = _run("""
import sys
import ocrvl_ray.layout.engines.transformers_detector, ocrvl_ray.layout.engines.configs
print(sorted(m for m in ('ray', 'paddle', 'paddleocr', 'paddlex', 'pydantic') if m in sys.modules))
""")
    assert out.strip() == "[]", out
