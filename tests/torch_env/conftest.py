"""tests/torch_env runs in .venv-torch (tests/test_torch_env.py starts it there); the default venv has no torch,
so its collection leaves these files out."""
import importlib.util

if importlib.util.find_spec("torch") is None:
    collect_ignore_glob = ["test_*.py"]
