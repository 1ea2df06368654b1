"""The merge as one Ray task: runs on the node that holds the files, returns the merge report.

Resources are declared here: one CPU and, optionally, a ``node:<ip>`` resource that pins the task to the
machine whose disk holds BASE/CKPT/EXPORT (a merge streams files; it never needs a GPU).
"""
from __future__ import annotations

from typing import Any


def _merge_and_verify(base: str, lora: str, out: str, max_shard_bytes: int, overwrite: bool,
                      verify: bool) -> dict[str, Any]:
    from ocrvl_ray.export.merge import merge_lora

    lines: list[str] = []
    res = merge_lora(base, lora, out, max_shard_bytes=max_shard_bytes, overwrite=overwrite, log=lines.append)
    result = {"out": str(res.out), "report": res.report, "log": lines, "verified": None}
    if verify:
        from ocrvl_ray.export.verify import verify_export

        v = verify_export(out, base, lora)
        result["verified"], result["verify_lines"] = v.ok, v.lines()
    return result


def merge_on_ray(base: str, lora: str, out: str, *, max_shard_bytes: int, overwrite: bool = False,
                 verify: bool = True, node_ip: str | None = None, num_cpus: float = 1) -> dict[str, Any]:
    """Run the merge as a Ray task (Ray must be initialised) and wait for its result."""
    import ray

    resources = {f"node:{node_ip}": 0.001} if node_ip else None
    task = ray.remote(num_cpus=num_cpus, resources=resources, max_retries=0)(_merge_and_verify)
    return ray.get(task.remote(base, lora, out, max_shard_bytes, overwrite, verify))
