"""Offline checks of a Ray autoscaler ``cluster.yaml`` against what ocrvl jobs request.

No cloud credentials and no network: Ray's own schema and semantic checks (``prepare_config`` +
``validate_config``), then project rules (GPU workers scale from zero, the head mounts the output
volume and the repository, no public ingress to the dashboard / client ports) and a fit check: every
actor pool / task / Train worker request fits a node type, and the pools' minimum sizes fit at once.
The layout job's requests are the stages' own declarations (``layout.job.stage_resources``).

    ocrvl cluster-check cluster.yaml [configs/cluster_layout.yaml] [--train-workers N]
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path


from ocrvl_ray.core.config import load_yaml
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.core.runtime import StageResources

PRIVATE_PORTS = (8265, 10001)   # dashboard / job API, Ray client
OPEN_CIDRS = ("0.0.0.0/0", "::/0")
#: Ray's test providers (``RAY_FAKE_CLUSTER=1``): every node is a process on one machine, sharing its disk; the
#: wheel lacks their defaults file, so they are checked without Ray's default merge and without the mount rules.
FAKE_PROVIDERS = ("fake_multinode", "fake_multinode_docker")
#: Providers that fill each node type's ``memory`` resource from the instance type when the config omits it.
MEMORY_FILLED_BY = ("aws",)


@dataclass
class Request:
    """``count`` copies (``min_count`` needed to make progress) of one resource request, e.g. an actor pool.
    ``memory`` (bytes per copy) fits only node types with a ``memory`` resource (declared, or filled in by the
    provider): for any other the autoscaler never launches a node, whatever the machine has."""
    name: str
    resources: dict[str, float]
    min_count: int = 1
    count: int = 1
    memory: int = 0

    @classmethod
    def of(cls, stage: StageResources) -> "Request":
        res = {"CPU": float(stage.num_cpus)}
        if stage.actors or stage.num_gpus:
            res["GPU"] = float(stage.num_gpus)
        lo, hi = stage.actors or (1, 1)
        return cls(stage.name, res, lo, hi, stage.memory)

    def per_copy(self) -> dict[str, float]:
        return {**self.resources, "memory": float(self.memory)} if self.memory else self.resources


def load_cluster(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise OcrvlError(f"{p}: cluster config not found (pass the cluster.yaml given to `ray up`)")
    return load_yaml(p)   # the one YAML loader: errors with line and column


def ray_validate(cfg: dict) -> dict:
    """Ray's own schema + semantic validation; returns the prepared config (defaults merged).

    Raises ``OcrvlError`` with Ray's message on the first problem."""
    import logging

    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    logging.getLogger("ray.autoscaler._private.util").setLevel(logging.WARNING)  # "setting max workers…"

    ptype = cfg.get("provider", {}).get("type") if isinstance(cfg.get("provider"), dict) else None
    try:
        if ptype in FAKE_PROVIDERS:   # prepare_config's steps with empty defaults in place of the missing file
            from ray.autoscaler._private.util import fill_node_type_min_max_workers, merge_setup_commands

            empty = {k: [] for k in ("cluster_synced_files", "initialization_commands", "setup_commands",
                                     "head_setup_commands", "worker_setup_commands", "head_start_ray_commands",
                                     "worker_start_ray_commands", "rsync_exclude", "rsync_filter")}
            prepared = merge_setup_commands({**empty, "auth": {}, "file_mounts": {}, **copy.deepcopy(cfg)})
            fill_node_type_min_max_workers(prepared)
        else:
            prepared = prepare_config(copy.deepcopy(cfg))
        validate_config(prepared)
    except jsonschema.ValidationError as e:
        where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
        raise OcrvlError(f"Ray rejects the cluster config at {where}: {e.message}") from None
    except KeyError as e:
        raise OcrvlError(f"Ray rejects the cluster config: required key {e} is missing") from None
    except (ValueError, TypeError) as e:
        raise OcrvlError(f"Ray rejects the cluster config: {type(e).__name__}: {e}") from None
    except (NotImplementedError, OSError) as e:   # a provider Ray does not know, or whose defaults it lacks
        raise OcrvlError(f"provider.type={ptype!r}: Ray cannot check this provider here ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}); use one of Ray's providers "
                         f"(aws, gcp, azure, kuberay, local, ...) or {', '.join(FAKE_PROVIDERS)} for tests") from None
    return prepared


def node_slots(cfg: dict) -> list[tuple[str, dict[str, float]]]:
    """One entry per node the cluster can have at full scale: the head once, each worker type max_workers times.
    On a provider that fills in ``memory`` (``MEMORY_FILLED_BY``) a node type without it has unbounded memory
    (its amount is known only at launch)."""
    head = cfg["head_node_type"]
    filled = cfg.get("provider", {}).get("type") in MEMORY_FILLED_BY
    slots = []
    for name, nt in cfg["available_node_types"].items():
        n = 1 if name == head else int(nt.get("max_workers", cfg.get("max_workers", 0)))
        res = dict(nt.get("resources", {}))
        if filled:
            res.setdefault("memory", float("inf"))
        slots += [(name, res)] * n
    return slots


def _fits(req: dict[str, float], have: dict[str, float]) -> bool:
    return all(v <= have.get(k, 0) + 1e-9 for k, v in req.items() if v > 0)


def _pack(slots: list[tuple[str, dict[str, float]]], items: list[dict[str, float]]) -> int:
    """First-fit-decreasing placement; returns how many of ``items`` were placed."""
    free = [dict(r) for _, r in slots]
    placed = 0
    for item in sorted(items, key=lambda r: (-r.get("GPU", 0), -r.get("CPU", 0))):
        for f in free:
            if _fits(item, f):
                for k, v in item.items():
                    f[k] = f.get(k, 0) - v
                placed += 1
                break
    return placed


def check_fit(cfg: dict, requests: list[Request]) -> list[str]:
    """Problems with ``requests`` on this cluster (empty list: everything fits)."""
    slots = node_slots(cfg)
    problems = []
    for r in requests:
        where = [name for name, res in dict(slots).items() if _fits(r.per_copy(), res)]
        if not where and r.memory and any(_fits(r.resources, res) for res in dict(slots).values()):
            lacking = [n for n, res in dict(slots).items() if _fits(r.resources, res)]
            problems.append(f"{r.name} asks {_fmt(r.per_copy())} per copy; the node types with its "
                            f"{_fmt(r.resources)} ({', '.join(lacking)}) declare no memory that large, so the "
                            f"autoscaler never launches one for it: drop the pool's memory_mb or declare `memory` "
                            f"in their resources")
        elif not where:
            problems.append(f"{r.name} asks {_fmt(r.resources)} per copy; no node type offers that "
                            f"({', '.join(f'{n} {_fmt(res)}' for n, res in dict(slots).items())})")
        elif _pack(slots, [r.per_copy()] * r.count) < r.count:
            problems.append(f"{r.name}: {r.count} x {_fmt(r.resources)} exceed the cluster at full scale")
    mins = [r.per_copy() for r in requests for _ in range(r.min_count)]
    if not problems and _pack(slots, mins) < len(mins):
        problems.append("the minimum sizes of all pools together do not fit the cluster at full scale: "
                        + ", ".join(f"{r.name} {r.min_count} x {_fmt(r.resources)}" for r in requests))
    return problems


def _fmt(res: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v / 2**20:g} MiB" if k == "memory" else f"{k}: {v:g}" for k, v in res.items()) + "}"


def layout_requests(config) -> list[Request]:
    """Requests of the layout job for a ``LayoutConfig``: what each of its stages declares."""
    from ocrvl_ray.layout.job import stage_resources

    return [Request.of(s) for s in stage_resources(config)]


def train_requests(num_workers: int, use_gpu: bool = True, gpus_per_worker: float = 1,
                   cpus_per_worker: float = 1) -> list[Request]:
    """Ray Train worker group: all ``num_workers`` must be placed before training starts."""
    res = {"CPU": cpus_per_worker, "GPU": gpus_per_worker if use_gpu else 0}
    return [Request("train workers", res, num_workers, num_workers)]


def pool_problems(config) -> list[str]:
    """GPU requests Ray cannot honour: fractions above 1 GPU per actor."""
    from ocrvl_ray.layout.config import actor_gpus

    problems = []
    for name, pool in (("layout", config.layout), ("cells", config.cells)):
        g = actor_gpus(pool, pool.device)
        if g > 1 and g != int(g):
            problems.append(f"{name}.num_gpus={g:g}: above 1 GPU per actor Ray needs a whole number")
    return problems


def project_problems(cfg: dict, output_mount: str = "/data", repo_mount: str = "~/ocrvl-ray") -> list[str]:
    """The ocrvl-ray rules for a cluster config (Ray's validation does not know them)."""
    problems = []
    types = cfg.get("available_node_types", {})
    head = cfg.get("head_node_type")
    fake = cfg.get("provider", {}).get("type") in FAKE_PROVIDERS
    for name, nt in types.items():
        gpus = nt.get("resources", {}).get("GPU", 0)
        if name != head and gpus and nt.get("min_workers", 0) != 0:
            problems.append(f"GPU worker type {name!r} has min_workers {nt.get('min_workers')}: use 0 "
                            "so idle GPUs are released")
    if cfg.get("provider", {}).get("type") == "aws":
        for name, nt in types.items():
            if str(nt.get("node_config", {}).get("ImageId", "")).lower() in ("", "latest_dlami"):
                problems.append(f"node type {name!r} has no ImageId: Ray's default AMI (CUDA 11.2 driver) "
                                "cannot run the CUDA 12.6 image")
    if not any(nt.get("resources", {}).get("GPU", 0) for n, nt in types.items() if n != head):
        problems.append("no GPU worker type: detection and training need one")
    if fake:   # one machine, one disk: nothing to mount or sync, no ingress
        return problems
    docker = cfg.get("docker", {})
    run_opts = " ".join(docker.get("run_options", []) + docker.get("head_run_options", []))
    if docker and f"{output_mount}:{output_mount}" not in run_opts.replace(" ", ""):
        problems.append(f"the head container does not bind the output volume {output_mount} "
                        f"(docker.head_run_options: -v {output_mount}:{output_mount})")
    if not any(output_mount in c for c in cfg.get("initialization_commands", [])):
        problems.append(f"the head's initialization_commands do not mount {output_mount}")
    if repo_mount not in cfg.get("file_mounts", {}):
        problems.append(f"file_mounts does not sync the repository to {repo_mount} (setup runs pip install -e there)")
    for perm in cfg.get("provider", {}).get("security_group", {}).get("IpPermissions", []) or []:
        lo, hi = int(perm.get("FromPort", -1)), int(perm.get("ToPort", -1))
        cidrs = [r.get("CidrIp") for r in perm.get("IpRanges", [])] + \
                [r.get("CidrIpv6") for r in perm.get("Ipv6Ranges", [])]
        for port in PRIVATE_PORTS:
            if (lo == -1 or lo <= port <= hi) and any(c in OPEN_CIDRS for c in cidrs):
                problems.append(f"security group opens port {port} to the internet; use `ray dashboard` (SSH tunnel)")
    for cmd in cfg.get("head_start_ray_commands", []):
        if re.search(r"--dashboard-host[= ]+0\.0\.0\.0", cmd):
            problems.append("head_start_ray_commands bind the dashboard on all interfaces; "
                            "bind 127.0.0.1 and tunnel with `ray dashboard`")
    return problems


def check_cluster(path: str | Path, layout_yaml: str | Path | None = None, train_workers: int = 0,
                  gpus_per_worker: float = 1, cpus_per_worker: float = 1) -> list[str]:
    """All problems (empty: OK). Ray's own rejection raises ``OcrvlError``. The layout job and the
    training job are checked separately: they do not run at the same time."""
    from ocrvl_ray.core.config import load_config
    from ocrvl_ray.layout.config import LayoutConfig

    cfg = load_cluster(path)
    prepared = ray_validate(cfg)
    problems = project_problems(cfg)
    if layout_yaml:
        lc = load_config(LayoutConfig, layout_yaml, env={})
        problems += pool_problems(lc) + check_fit(prepared, layout_requests(lc))
    if train_workers:
        problems += check_fit(prepared, train_requests(train_workers, True, gpus_per_worker, cpus_per_worker))
    return problems
