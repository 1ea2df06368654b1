"""What a Ray Train worker runs: an entry ``module:function`` called with the config dict.

* :func:`erniekit` (the default) calls erniekit's tuner in-process from the user's ERNIE checkout —
  never the ``erniekit`` CLI, which strips the collective environment and re-launches.
* :func:`launcher_command` builds the launcher-mode command: ``paddle.distributed.launch`` on this node
  running :mod:`ocrvl_ray.train.child` with the entry (erniekit's or a custom one) in every process.
"""
from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ocrvl_ray.core.errors import OcrvlError

#: What ``erniekit train`` sets before launching (erniekit/cli.py); harmless for other entries.
ERNIEKIT_ENV = {"FLAGS_set_to_1d": "False", "NVIDIA_TF32_OVERRIDE": "0",
                "FLAGS_dataloader_use_file_descriptor": "False"}
CHECKOUT_PARTS = ("ernie", "data_processor", "erniekit/train/tuner.py")


def load_entry(spec: str) -> Callable[[dict], Any]:
    """``"package.module:function"`` -> the function; a clear one-line error otherwise."""
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise OcrvlError(f"entry {spec!r} is not module:function (e.g. ocrvl_ray.testing.train:tiny_lora_sft)")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise OcrvlError(f"entry {spec!r}: cannot import {module} ({e}); is it installed on every node?") from None
    fn = getattr(mod, name, None)
    if not callable(fn):
        raise OcrvlError(f"entry {spec!r}: {module} has no function {name}")
    return fn


def ernie_checkout(root: str | None = None) -> Path:
    """The ERNIE checkout from ``ernie_root`` or ``$ERNIE_ROOT``, checked to hold what the tuner imports."""
    root = root or os.environ.get("ERNIE_ROOT")
    if not root:
        raise OcrvlError("the erniekit entry needs the ERNIE checkout: set ernie_root=/path/to/ERNIE (or "
                         "ERNIE_ROOT); the PyPI erniekit wheel lacks its ernie/ and data_processor/ packages")
    p = Path(root).expanduser()
    missing = [part for part in CHECKOUT_PARTS if not (p / part).exists()]
    if missing:
        raise OcrvlError(f"ernie_root {p} is not an ERNIE checkout (missing {', '.join(missing)}); point it at "
                         "the clone that holds erniekit/, ernie/ and data_processor/")
    return p


@dataclass(frozen=True)
class InProcessCall:
    """``sys.path[0] = sys_path; os.environ.update(env); module.function(args)``."""
    sys_path: str
    args: dict
    module: str = "erniekit.train.tuner"
    function: str = "run_tuner"
    env: dict = field(default_factory=lambda: dict(ERNIEKIT_ENV))


def erniekit_call(config: Mapping[str, Any], ernie_root: str | None = None) -> InProcessCall:
    return InProcessCall(sys_path=str(ernie_checkout(ernie_root)), args=dict(config))


def erniekit(config: dict[str, Any]) -> None:
    """Default entry: erniekit's tuner, in this process, on the collective env the backend set."""
    call = erniekit_call(config)
    os.environ.update(call.env)
    if sys.path[:1] != [call.sys_path]:
        sys.path.insert(0, call.sys_path)
    getattr(importlib.import_module(call.module), call.function)(call.args)


def launcher_command(entry: str, config_file: str, env: Mapping[str, str], log_dir: str) -> list[str]:
    """Launcher mode: this node's ``paddle.distributed.launch`` command (env from the backend). Every
    launched process runs :mod:`ocrvl_ray.train.child`, which picks that process's shards and calls the
    entry: erniekit's own ``launcher.py`` would give all processes the same data, and cannot import
    ``erniekit`` unless ``ernie_root`` is on PYTHONPATH (the entry puts it on ``sys.path``)."""
    cmd = [sys.executable, "-u", "-m", "paddle.distributed.launch",
           "--master", f"{env['MASTER_ADDR']}:{env['MASTER_PORT']}", "--nnodes", env["NNODES"],
           "--rank", env["PADDLE_RANK"], "--host", env["POD_IP"], "--log_dir", log_dir]
    if env.get("FLAGS_selected_gpus"):
        cmd += ["--devices", env["FLAGS_selected_gpus"]]
    return cmd + [str(Path(__file__).with_name("child.py")), entry, config_file]
