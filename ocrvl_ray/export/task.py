"""The merge with its verify pass, in this process or as one Ray task on the node that holds the files.

The task asks for one CPU and, optionally, a ``node:<ip>`` resource that pins it to the machine whose disk
holds BASE/CKPT/EXPORT (a merge streams files; it never needs a GPU).
"""
from __future__ import annotations

from typing import Any, Callable, Optional


def merge_and_verify(base: str, lora: str, out: str, max_shard_bytes: int, overwrite: bool, verify: bool,
                     log: Optional[Callable[[str], None]] = None) -> dict[str, Any]:
    """Merge, then (``verify``) check the export; ``log`` gets progress lines (default: kept in ``"log"``)."""
    from ocrvl_ray.export.merge import merge_lora

    lines: list[str] = []
    res = merge_lora(base, lora, out, max_shard_bytes=max_shard_bytes, overwrite=overwrite,
                     log=log or lines.append)
    result = {"out": str(res.out), "report": res.report, "log": lines, "verified": None}
    if verify:
        from ocrvl_ray.export.verify import verify_export

        v = verify_export(out, base, lora)
        result["verified"], result["verify_lines"] = v.ok, v.lines()
    return result


def merge_on_ray(base: str, lora: str, out: str, *, max_shard_bytes: int, overwrite: bool, verify: bool,
                 node_ip: str | None = None, num_cpus: float = 1) -> dict[str, Any]:
    """Run ``merge_and_verify`` as a Ray task (Ray must be initialised) and wait for its result; the options'
    defaults are ``MergeConfig``'s (``export/config.py``), so callers pass them."""
    import ray

    resources = {f"node:{node_ip}": 0.001} if node_ip else None
    task = ray.remote(num_cpus=num_cpus, resources=resources, max_retries=0)(merge_and_verify)
    return ray.get(task.remote(base, lora, out, max_shard_bytes, overwrite, verify))
