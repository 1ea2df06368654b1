"""The resolved dependency set installs consistently and imports together (pip check misses pyarrow/numpy)."""
import subprocess
import sys


def test_pip_check_passes():
    res = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_whole_stack_imports_together_in_one_process():
    code = """
import numpy, pyarrow, ray, ray.data, ray.train, paddle, paddleocr, lmdb, safetensors, ml_dtypes, cv2, yaml, pydantic
from paddleformers.peft import LoRAConfig, LoRAModel
import pyarrow.parquet
assert int(numpy.__version__.split('.')[0]) < 2 or int(pyarrow.__version__.split('.')[0]) >= 26
t = pyarrow.table({'a': numpy.arange(3)})
assert t.num_rows == 3
print(cv2.__version__, paddle.__version__, ray.__version__)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


def test_exactly_one_opencv_distribution():
    from importlib.metadata import distributions

    names = {d.metadata["Name"].lower() for d in distributions()}
    cv = sorted(n for n in names if n.startswith("opencv"))
    assert cv == ["opencv-contrib-python"], cv
