"""The trainer's ``checkpoint-N/`` folders on disk: find finished ones, stage them for reporting,
restore one for resuming, find the newest complete one in storage, and read their metrics. Plain
filesystem code (no Ray, no Paddle; storage through a ``pyarrow.fs`` filesystem).

A paddleformers checkpoint is written file by file: weights, ``trainer_state.json``, RNG state,
optimizer, and ``scheduler.pdparams`` last. A folder counts as finished when ``trainer_state.json`` and
``scheduler.pdparams`` exist and nothing in it changed for ``settle_s`` seconds, or when a newer
checkpoint exists or the trainer has exited (then ``trainer_state.json`` suffices).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

CKPT_RE = re.compile(r"^checkpoint-(\d+)$")
STAGED_RE = re.compile(r"^checkpoint-(\d+)-[0-9a-f]{8}$")     # a staging copy made by stage()
STATE_FILE = "trainer_state.json"
STATE_FILE_PF1 = "trainer_state.bin"     # PaddleFormers 1.x writes the trainer state pickled under this name
LAST_FILE = "scheduler.pdparams"
#: Written into each staged copy: ``{relative path: size}`` of its files, so a copy in storage can be
#: told complete whatever order the upload wrote its files in.
FILES_LIST = "ocrvl-files.json"
#: Numeric fields of paddleformers' log entries that we stream as metrics.
METRIC_KEYS = ("loss", "learning_rate", "grad_norm", "epoch", "progress_or_epoch", "train_loss")


def list_checkpoints(output_dir: str | os.PathLike) -> dict[int, Path]:
    """``{step: path}`` of ``checkpoint-N`` folders directly under ``output_dir``."""
    d = Path(output_dir)
    if not d.is_dir():
        return {}
    out = {}
    for p in d.iterdir():
        m = CKPT_RE.match(p.name)
        if m and p.is_dir():
            out[int(m.group(1))] = p
    return dict(sorted(out.items()))


def state_file(path: Path) -> Path:
    """The checkpoint's trainer state file (``trainer_state.json``, or PaddleFormers 1.x's ``.bin``)."""
    pf1 = path / STATE_FILE_PF1
    return pf1 if pf1.is_file() and not (path / STATE_FILE).is_file() else path / STATE_FILE


def unfinished(output_dir: str | os.PathLike) -> list[Path]:
    """``checkpoint-N`` folders without ``trainer_state.json``: never reported."""
    return [p for p in list_checkpoints(output_dir).values() if not state_file(p).is_file()]


def why_none(output_dir: str | os.PathLike) -> str:
    """Why a run reported no checkpoint, as seen from this machine."""
    out = Path(output_dir)
    if not out.is_dir():
        return f"output_dir {out} is not on this machine; look on the node of rank 0"
    bad = unfinished(out)
    if bad:
        return (f"{', '.join(p.name for p in bad)} in {out} {'has' if len(bad) == 1 else 'have'} no {STATE_FILE}, "
                "so the trainer never finished saving it (it stopped while saving, or saves no trainer state)")
    return f"the trainer wrote no checkpoint-N under {out}; is save_steps larger than max_steps, or save_strategy no?"


def signature(path: Path) -> tuple[int, int] | None:
    """Identity of one write of a checkpoint: (mtime_ns, size) of its trainer state, or None."""
    try:
        st = state_file(path).stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def is_finished(path: Path, *, settled_before: float, newer_exists: bool, trainer_exited: bool) -> bool:
    if not state_file(path).is_file():
        return False
    if newer_exists or trainer_exited:
        return True
    try:
        if (path / LAST_FILE).stat().st_mtime_ns < state_file(path).stat().st_mtime_ns:
            return False                      # missing, or left from an older write of this folder
        newest = max(f.stat().st_mtime for f in path.rglob("*") if f.is_file())
    except (OSError, ValueError):
        return False
    return newest <= settled_before


class CheckpointWatcher:
    """Yields each finished checkpoint write once; ignores what was on disk when it started and steps
    at or below ``after_step`` (the checkpoint a restarted run resumed from)."""

    def __init__(self, output_dir: str | os.PathLike, after_step: int = -1, settle_s: float = 1.0):
        self.output_dir = Path(output_dir)
        self.after_step = after_step
        self.settle_s = settle_s
        self.seen = {step: signature(p) for step, p in list_checkpoints(self.output_dir).items()}

    def poll(self, trainer_exited: bool = False) -> list[int]:
        found = list_checkpoints(self.output_dir)
        newest = max(found, default=-1)
        settled_before = time.time() - self.settle_s
        new = []
        for step, path in found.items():
            sig = signature(path)
            if step <= self.after_step or sig is None or self.seen.get(step) == sig:
                continue
            if is_finished(path, settled_before=settled_before, newer_exists=step < newest,
                           trainer_exited=trainer_exited):
                self.seen[step] = sig
                new.append(step)
        return new


def side_dir(output_dir: str | os.PathLike, what: str) -> Path:
    """``<output_dir>.<what>`` beside output_dir: erniekit refuses a non-empty output_dir without
    checkpoints, so our own files (staging copies, launcher configs and logs) never go inside it."""
    out = Path(output_dir)
    return out.parent / f"{out.name}.{what}"


def stage(src: Path, staging_root: Path) -> Path | None:
    """Hard-link copy of ``src`` (falls back to copying), so the trainer may rotate ``src`` away while
    it is uploaded. None when ``src`` vanished meanwhile (``save_total_limit`` rotation)."""
    dst = staging_root / f"{src.name}-{uuid.uuid4().hex[:8]}"

    def link_or_copy(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    try:
        shutil.copytree(src, dst, copy_function=link_or_copy)
    except (FileNotFoundError, shutil.Error):
        shutil.rmtree(dst, ignore_errors=True)
        return None
    files = {f.relative_to(dst).as_posix(): f.stat().st_size for f in sorted(dst.rglob("*"))
             if f.is_file() and f.name != FILES_LIST}
    (dst / FILES_LIST).write_text(json.dumps(files, sort_keys=True), encoding="utf-8")
    return dst


def stored_complete(fs, fs_path: str) -> bool:
    """A ``checkpoint-N`` in storage (``pyarrow.fs`` filesystem + path) is complete: every file of its
    :data:`FILES_LIST` is there with its size; without a list (not staged by us), its trainer state is."""
    from pyarrow.fs import FileType

    listed = f"{fs_path}/{FILES_LIST}"
    if fs.get_file_info(listed).type != FileType.File:
        names = [f"{fs_path}/{STATE_FILE}", f"{fs_path}/{STATE_FILE_PF1}"]
        return any(i.type == FileType.File for i in fs.get_file_info(names))
    try:
        with fs.open_input_stream(listed) as f:
            files = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):     # still being written
        return False
    infos = fs.get_file_info([f"{fs_path}/{name}" for name in files])
    return all(i.type == FileType.File and i.size == size for i, size in zip(infos, files.values()))


def newest_stored(fs, experiment_fs_path: str, after_step: int) -> str | None:
    """The newest complete ``checkpoint-N`` under the run's storage folder with N > ``after_step``
    (the step of the checkpoint Ray Train registered, -1 for none), as a path on ``fs``; else None.

    Such a folder was uploaded but never registered: the run failed between the upload and the
    controller's bookkeeping (e.g. its node died), and resuming from the registered one would redo
    every step in between."""
    from pyarrow.fs import FileSelector, FileType

    steps = {}
    for info in fs.get_file_info(FileSelector(experiment_fs_path, allow_not_found=True)):
        m = CKPT_RE.match(info.base_name)
        if m and info.type == FileType.Directory and int(m.group(1)) > after_step:
            steps[int(m.group(1))] = info.path
    for step in sorted(steps, reverse=True):
        if stored_complete(fs, steps[step]):
            return steps[step]
    return None


def restore(src: str | os.PathLike, output_dir: str | os.PathLike, step: int) -> Path:
    """Put a stored checkpoint back as ``output_dir/checkpoint-<step>`` (atomic rename of a full copy)
    and remove later ``checkpoint-M`` folders: leftovers of the failed attempt, rewritten on resume."""
    target = Path(output_dir) / f"checkpoint-{step}"
    tmp = Path(output_dir) / f".restore-{target.name}-{uuid.uuid4().hex[:8]}"
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, tmp)
    for later, path in list_checkpoints(output_dir).items():
        if later >= step:
            shutil.rmtree(path)
    os.replace(tmp, target)
    return target


def other_entries(output_dir: str | os.PathLike, logging_dir: str | os.PathLike | None = None) -> list[str]:
    """Names in ``output_dir`` other than ``checkpoint-N`` folders and the logging dir (when inside it;
    unset, the trainer logs to ``output_dir/runs/<time>_<host>``)."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    logs: str | None = "runs"
    if logging_dir:
        try:
            logs = Path(logging_dir).resolve().relative_to(out.resolve()).parts[0]
        except (ValueError, IndexError):    # elsewhere, or output_dir itself
            logs = None
    ckpts = {p.name for p in list_checkpoints(out).values()}
    return sorted(n for n in os.listdir(out) if n not in ckpts and n != logs)


def start_from(output_dir: str | os.PathLike, logging_dir: str | os.PathLike | None = None,
               ) -> tuple[dict[str, Any], list[str]]:
    """How an entry starts in ``output_dir`` when Ray Train holds no checkpoint: (config updates, notes).

    - ``checkpoint-N`` folders without trainer state and newer than every finished one are removed: a
      save cut off by a crash, which erniekit would pick as its last checkpoint and fail to load;
    - the newest finished one is resumed from (``resume_from_checkpoint``);
    - a folder holding nothing else but logs starts fresh (``overwrite_output_dir``: nothing is there
      to overwrite, and the entry's own "not empty" check would race against rank 0's first log file);
    - anything else is left to the entry (pre-flight refuses it before a run starts).
    """
    found = list_checkpoints(output_dir)
    done = [s for s, p in found.items() if state_file(p).is_file()]
    newest = max(done, default=-1)
    notes = []
    for step, path in found.items():
        if step > newest and not state_file(path).is_file():
            shutil.rmtree(path)
            notes.append(f"removed {path}: no {STATE_FILE}, a save cut off by the failure")
    if done:
        return {"resume_from_checkpoint": str(found[newest])}, notes
    if not other_entries(output_dir, logging_dir):
        return {"overwrite_output_dir": True}, notes
    return {}, notes


def checkpoint_step(path: str | os.PathLike) -> int:
    """Global step of a checkpoint: from its folder name ``checkpoint-N``, else its trainer state."""
    p = Path(path)
    m = CKPT_RE.match(p.name) or STAGED_RE.match(p.name)
    if m:
        return int(m.group(1))
    try:
        return int(json.loads((p / STATE_FILE).read_text())["global_step"])
    except (OSError, ValueError, KeyError) as e:
        raise ValueError(f"{p} is neither named checkpoint-N nor holds {STATE_FILE} with global_step") from e


def log_metrics(step: int, logs: dict[str, Any]) -> dict[str, float]:
    """The streamed form of one paddleformers log entry: ``step`` plus the numeric METRIC_KEYS."""
    out: dict[str, float] = {"step": int(step)}
    for k in METRIC_KEYS:
        v = logs.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = float(v)
    return out


def log_report(entries: list[dict[str, float]], keep: int = 100) -> dict[str, Any]:
    """One metric-only report for several log entries: the latest values flat, all of them (up to
    ``keep``) in ``log_history``."""
    return {**entries[-1], "log_history": entries[-keep:]}


def checkpoint_metrics(path: Path, logs: list[dict[str, float]]) -> dict[str, float]:
    """Metrics for a checkpoint report: its step, epoch, and the latest streamed log at or before it
    (paddleformers keeps no log history in ``trainer_state.json``)."""
    step = checkpoint_step(path)
    merged: dict[str, Any] = {}
    try:
        merged["epoch"] = json.loads((path / STATE_FILE).read_text()).get("epoch")
    except (OSError, ValueError):
        pass
    for entry in logs:
        if entry.get("step", -1) <= step:
            merged.update({k: v for k, v in entry.items() if k != "step"})
    return log_metrics(step, merged)
