"""The training console: our own lines on the terminal, everything else in ``<output_dir>.log``.

On the terminal: where the log goes, one line per logged step (step, loss, learning rate), one per checkpoint
stored in Ray storage, worker failures; the caller adds the result. Ray's start-up lines, the workers' output
(the trainer's DEBUG argument dumps, ANSI colours, warnings) and tracebacks go to the log file. The lines come
from the ``metrics_log`` JSONL that the Ray Train controller writes (``callbacks.MetricsLog``); without a
``metrics_log`` the run gets ``<output_dir>.metrics.jsonl``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from ocrvl_ray.train.checkpoints import side_dir
from ocrvl_ray.train.config import TrainConfig, run_name_for


def log_path(args: dict[str, Any]) -> Path:
    """``<output_dir>.log``: beside output_dir (erniekit refuses files of ours inside it)."""
    return side_dir(args["output_dir"], "log")


def console_line(record: dict) -> str | None:
    """The terminal line of one ``metrics_log`` record, or None for records that get none."""
    if record.get("error"):
        return f"ocrvl train: worker failed: {record['error']}"
    if record.get("checkpoint"):
        return f"ocrvl train: checkpoint stored: {record['checkpoint']}"
    if isinstance(record.get("loss"), (int, float)):
        lr = record.get("learning_rate")
        return (f"ocrvl train: step {record.get('step', '?')} loss {record['loss']:.4f}"
                + (f" lr {lr:.2e}" if isinstance(lr, (int, float)) else ""))
    return None


class Tail:
    """New complete lines of a JSONL file, from its size at creation on (a resumed run appends)."""

    def __init__(self, path: str):
        self.path = path
        self.pos = os.path.getsize(path) if os.path.exists(path) else 0

    def records(self) -> list[dict]:
        if not os.path.exists(self.path):
            return []
        with open(self.path, "rb") as f:
            f.seek(self.pos)
            data = f.read()
        end = data.rfind(b"\n") + 1                 # a line still being written waits for the next call
        self.pos += end
        out = []
        for line in data[:end].splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def fit_quietly(ours: TrainConfig, args: dict[str, Any], say: Callable[[str], None] | None = None):
    """Start Ray if needed and train (``run.fit``) with Ray's and the workers' output in ``<output_dir>.log``
    and our lines on the terminal (``say``, default: the real stdout); returns Ray Train's ``Result``."""
    from ocrvl_ray.core.console import RayLog, Ticker
    from ocrvl_ray.core.runtime import init_ray
    from ocrvl_ray.train.run import fit, world_size

    log = log_path(args)
    if not ours.metrics_log:
        ours = ours.model_copy(update={"metrics_log": str(side_dir(args["output_dir"], "metrics.jsonl"))})
    tail = Tail(ours.metrics_log)
    with RayLog(str(log)) as out:
        speak = say or out.say

        def flush() -> None:
            for record in tail.records():
                line = console_line(record)
                if line:
                    speak(line)

        speak(f"ocrvl train: {run_name_for(ours, args)}: {world_size(ours)} rank(s), entry {ours.entry}; "
              f"full log: {log}")
        init_ray(quiet=False)                 # the workers' output reaches this process, so the log file
        with Ticker(flush, every=1.0):
            result = fit(ours, args)
        flush()
    return result
