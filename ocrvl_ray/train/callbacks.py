"""Ray Train controller callback: every rank-0 report (streamed step/loss/learning rate, checkpoints)
and every worker failure as one JSON line in ``metrics_log``, on the node of the Ray Train controller."""
from __future__ import annotations

import json
import time
from pathlib import Path

from ray.train import UserCallback


class MetricsLog(UserCallback):
    def __init__(self, path: str):
        self.path = path

    def _write(self, record: dict) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"time": round(time.time(), 3), **record}) + "\n")

    def after_report(self, run_context, metrics, checkpoint):
        if not metrics or not metrics[0]:
            return
        flat = dict(metrics[0])
        for entry in flat.pop("log_history", None) or []:   # one line per streamed log entry
            self._write(entry)
        if checkpoint is not None:
            self._write({**flat, "checkpoint": checkpoint.path})

    def after_exception(self, run_context, worker_exceptions):
        for rank, e in sorted(worker_exceptions.items()):
            self._write({"error": f"rank {rank}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"})
