"""cluster.yaml: Ray's own offline validator + project rules + fit of the documented job configs."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest

from ocrvl_ray.cli import main as ocrvl
from ocrvl_ray.cluster import (check_cluster, check_fit, layout_requests, load_cluster, pool_problems,
                               project_problems, ray_validate, train_requests)
from ocrvl_ray.core.config import load_config
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.layout.config import LayoutConfig


def main(argv: list[str]) -> int:
    return ocrvl(["cluster-check", *argv])

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster.yaml"
LAYOUT = ROOT / "configs" / "cluster_layout.yaml"


@pytest.fixture(scope="module")
def cfg():
    return load_cluster(CLUSTER)


def _documented_train_args() -> dict[str, str]:
    """The training command in docs/cluster.md, so the docs and the cluster stay in step."""
    text = (ROOT / "docs" / "cluster.md").read_text(encoding="utf-8")
    cmd = re.search(r"python jobs/train\.py .*?(?=\n\S|\n\n)", text, re.S).group(0)
    return dict(re.findall(r"(\w+)=(\S+)", cmd))


def test_ray_validator_accepts_and_project_rules_hold(cfg):
    prepared = ray_validate(cfg)
    types = prepared["available_node_types"]
    assert prepared["head_node_type"] == "head" and types["head"]["resources"] == {"CPU": 0}
    assert types["gpu"]["resources"] == {"CPU": 8, "GPU": 1} and types["gpu"]["min_workers"] == 0
    # output volume mounted on the head host and bound into its container; repo synced
    assert any("/data" in c and "mount" in c for c in cfg["initialization_commands"])
    assert "-v /data:/data" in cfg["docker"]["head_run_options"]
    assert "~/ocrvl-ray" in cfg["file_mounts"]
    assert any("pip install" in c and "-e" in c for c in cfg["setup_commands"])
    assert any("paddlepaddle-gpu==3.3.1" in c for c in cfg["setup_commands"])
    # no public ingress: no extra rules at all, dashboard on localhost
    assert cfg["provider"]["security_group"]["IpPermissions"] == []
    assert all("0.0.0.0" not in c for c in cfg["head_start_ray_commands"])
    assert project_problems(cfg) == []


def test_documented_jobs_fit_the_node_types():
    from ocrvl_ray.train.config import load_train_config

    train = _documented_train_args()
    ours, _ = load_train_config(None, [f"{k}={v}" for k, v in train.items()], env={})
    assert ours.use_gpu and ours.num_workers == 4
    gpus = ours.gpus_per_worker if ours.mode == "launcher" else 1   # in-process: one GPU per worker
    problems = check_cluster(CLUSTER, LAYOUT, train_workers=ours.num_workers, gpus_per_worker=gpus,
                             cpus_per_worker=ours.cpus_per_worker)
    assert problems == []
    lc = load_config(LayoutConfig, LAYOUT, env={})
    reqs = {r.name: r for r in layout_requests(lc)}
    assert reqs["layout actor pool"].resources == {"CPU": 1.0, "GPU": 0.5}
    assert reqs["cells actor pool"].count == 4
    assert main([str(CLUSTER), str(LAYOUT), "--train-workers", str(ours.num_workers)]) == 0


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["available_node_types"]["gpu"]["resources"].update(GPU=0.5), "0.5 is not of type 'integer'"),
    (lambda c: c["available_node_types"]["cpu"].update(min_worker=1), "min_worker"),
    (lambda c: c.update(head_node_type="ray.head.default"), "head_node_type"),
    (lambda c: c["available_node_types"]["gpu"].pop("node_config"), "node_config"),
    (lambda c: c.update(dashboard_port=8265), "dashboard_port"),
])
def test_ray_rejects_broken_copies(cfg, mutate, message):
    broken = copy.deepcopy(cfg)
    mutate(broken)
    with pytest.raises(OcrvlError, match=re.escape(message)):
        ray_validate(broken)


def test_project_rules_catch_unsafe_copies(cfg):
    c = copy.deepcopy(cfg)
    c["available_node_types"]["gpu"]["min_workers"] = 1
    c["provider"]["security_group"]["IpPermissions"] = [
        {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    c["docker"]["head_run_options"] = []
    c["head_start_ray_commands"] = ["ray start --head --dashboard-host 0.0.0.0"]
    del c["file_mounts"]["~/ocrvl-ray"]
    del c["available_node_types"]["gpu"]["node_config"]["ImageId"]
    ray_validate(c)   # all of this is valid for Ray itself
    problems = " | ".join(project_problems(c))
    for needle in ("min_workers 1", "port 8265 to the internet", "does not bind the output volume /data",
                   "dashboard on all interfaces", "does not sync the repository", "'gpu' has no ImageId"):
        assert needle in problems
    # an internal rule (from the cluster's own group) on 8265 is fine
    c2 = copy.deepcopy(cfg)
    c2["provider"]["security_group"]["IpPermissions"] = [
        {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "10.0.0.0/16"}]}]
    assert project_problems(c2) == []


def test_fit_rejects_requests_the_nodes_cannot_hold(cfg):
    prepared = ray_validate(cfg)

    def layout(**over):
        return load_config(LayoutConfig, LAYOUT, overrides=[f"{k}={v}" for k, v in over.items()], env={})

    # 2 GPUs per actor: no node type has them
    lc = layout(**{"layout.num_gpus": 2})
    assert "no node type offers that" in " ".join(check_fit(prepared, layout_requests(lc)))
    # 5 whole-GPU actors on 4 one-GPU nodes
    lc = layout(**{"layout.num_gpus": 1, "layout.max_actors": 5})
    assert "5 x {CPU: 1, GPU: 1} exceed" in " ".join(check_fit(prepared, layout_requests(lc)))
    # minimum sizes 4 x 1 GPU + 1 x 0.5 GPU cannot run at once (Ray Data would wait forever)
    lc = layout(**{"layout.num_gpus": 1, "layout.min_actors": 4, "layout.max_actors": 4})
    assert "minimum sizes" in " ".join(check_fit(prepared, layout_requests(lc)))
    # ... but without the cell pool they can
    lc = layout(**{"layout.num_gpus": 1, "layout.min_actors": 4, "layout.max_actors": 4, "cells.enabled": False})
    assert check_fit(prepared, layout_requests(lc)) == []
    # one train worker per GPU: 5 do not fit 4 GPU nodes; 33 CPUs per worker fit no node
    assert check_fit(prepared, train_requests(4)) == []
    assert "exceed" in check_fit(prepared, train_requests(5))[0]
    assert "no node type" in check_fit(prepared, train_requests(1, cpus_per_worker=33))[0]
    # fractional GPUs above 1 per actor
    assert "whole number" in " ".join(pool_problems(layout(**{"layout.num_gpus": 1.5})))
    assert pool_problems(layout(**{"layout.num_gpus": 2})) == []


def test_cli_reports_ray_rejection_in_one_line(cfg, tmp_path, capsys):
    import yaml

    broken = copy.deepcopy(cfg)
    broken["available_node_types"]["gpu"]["resources"]["GPU"] = 0.5
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    assert main([str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("ocrvl cluster-check: error: Ray rejects the cluster config at available_node_types.gpu.resources.GPU: "
                   "0.5 is not of type 'integer'")


def test_fit_reads_each_stages_own_declaration(cfg):
    lc = load_config(LayoutConfig, LAYOUT, env={})
    reqs = {r.name: r for r in layout_requests(lc)}
    assert list(reqs) == ["decode task", "layout actor pool", "table crop task", "cells actor pool", "compose task",
                          "LMDB writer task"]
    assert reqs["decode task"].resources == {"CPU": 1.0} and reqs["LMDB writer task"].resources == {"CPU": 0.0}
    # no memory request unless the user sets one (issue 27: node types without `memory` never satisfy it)
    assert reqs["layout actor pool"].memory == 0 and reqs["decode task"].memory == 0
    lc = load_config(LayoutConfig, LAYOUT, overrides=["layout.memory_mb=1024"], env={})
    assert {r.name: r.memory for r in layout_requests(lc)}["layout actor pool"] == 1 << 30
    # node types that declare memory are checked against it
    small = copy.deepcopy(cfg)
    for nt in small["available_node_types"].values():
        nt["resources"]["memory"] = 512 << 20
    assert "declare no memory that large" in " ".join(check_fit(ray_validate(small), layout_requests(lc)))


FAKE = {"cluster_name": "drill", "max_workers": 4, "idle_timeout_minutes": 1,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True},
        "head_node_type": "head",
        "available_node_types": {
            "head": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "cpu": {"resources": {"CPU": 1}, "node_config": {}, "min_workers": 0, "max_workers": 2},
            "gpu": {"resources": {"CPU": 1, "GPU": 1}, "node_config": {}, "min_workers": 0, "max_workers": 2}}}


def test_fake_provider_is_checked_and_memory_requests_it_cannot_meet_are_flagged(tmp_path, capsys):
    """Issue 27 (1, 10): Ray's fake multi-node provider (no defaults file in the wheel) is checked, not a
    traceback; a pool's memory request on node types that declare no memory is one problem line naming the
    pool, the request and the node types (the autoscaler would never launch a GPU node for it)."""
    import yaml

    path = tmp_path / "fake.yaml"
    path.write_text(yaml.safe_dump(FAKE), encoding="utf-8")
    gpu = tmp_path / "gpu.yaml"
    gpu.write_text("layout: {device: gpu}\ncells: {device: gpu}\n", encoding="utf-8")
    assert main([str(path), str(gpu), "--train-workers", "2"]) == 0
    assert capsys.readouterr().out.strip().endswith("fake.yaml: OK")
    gpu.write_text("layout: {device: gpu, memory_mb: 1024}\ncells: {enabled: false}\n", encoding="utf-8")
    assert main([str(path), str(gpu)]) == 1
    problem, = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("problem:")]
    assert problem == ("problem: layout actor pool asks {CPU: 0, GPU: 1, memory: 1024 MiB} per copy; the node types "
                       "with its {CPU: 0, GPU: 1} (gpu) declare no memory that large, so the autoscaler never launches "
                       "one for it: drop the pool's memory_mb or declare `memory` in their resources")


def test_unknown_provider_is_one_line(tmp_path, capsys):
    import yaml

    path = tmp_path / "odd.yaml"
    path.write_text(yaml.safe_dump({**FAKE, "provider": {"type": "nosuch"}}), encoding="utf-8")
    assert main([str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("ocrvl cluster-check: error: provider.type='nosuch': ")


def test_small_clusters_run_without_ray_datas_reservation():
    """Ray Data reserves each stage at least one task's CPUs, upstream first: on CPU devices decode,
    table crops and compose take 1 CPU each and the two detector pools 0.25 each (3.5), on GPU devices the
    pools none (3). Below that, compose would get no reservation; an empty cluster keeps Ray's default."""
    from ocrvl_ray.layout.job import reservation_starves

    def starves(*over):
        c = load_config(LayoutConfig, overrides=["manifest=m.parquet", *over], env={})
        return [cpus for cpus in (0, 1, 2, 3, 3.5, 4, 64) if reservation_starves(c, cpus)]

    assert starves() == [1, 2, 3]
    assert starves("layout.device=gpu:0", "cells.device=gpu:0") == [1, 2]
    assert starves("cells.enabled=false") == [1, 2]
