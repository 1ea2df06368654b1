"""The ``Stage`` protocol of the layout graph (after NeMo Curator's ``ProcessingStage`` and datatrove's
``PipelineStep``) and the column contract check. No Ray here: ``layout/job.py`` turns stages into operators.

A stage is one class, built from its config section by ``from_config(cfg)`` (the config models in
``layout/config.py`` hold every default; a stage defines none of its own). It declares

* ``name``          its operator's name in Ray's plan (``MapBatches(<name>)``)
* ``resources``     what one copy asks Ray for (``StageResources``; ``actors`` set = an actor pool)
* ``reads``         columns it needs from upstream
* ``writes``        columns it adds or replaces
* ``drops``         columns it consumes (not passed on)
* ``passes_through`` False when its output holds only ``writes`` (compose: one sink row per page)
* ``batch_format``, ``batch_size``

and does its work in ``setup()`` (once per actor: load a model; per task for task stages, so it stays
cheap there) and ``process_batch(batch)``.
"""
from __future__ import annotations

from typing import Any, Iterable

from ocrvl_ray.core.config import ConfigError
from ocrvl_ray.core.runtime import StageResources


class Stage:
    name: str
    resources: StageResources
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    drops: tuple[str, ...] = ()
    passes_through: bool = True
    batch_format: str
    batch_size: int

    def setup(self) -> None:
        """Per-process preparation (a detector loads its model here, once per actor)."""

    def process_batch(self, batch: Any) -> Any:
        raise NotImplementedError


class DetectorStage(Stage):
    """A detector actor pool over one config section (``section_key``: ``layout`` or ``cells``): one model per
    actor (``setup``); batch size, pool size, CPUs and GPUs from the section (``actors.pool_resources``)."""
    section_key: str
    batch_format = "pyarrow"

    def __init__(self, section):
        from ocrvl_ray.layout.stages.actors import pool_resources

        self.section = section
        self.batch_size = section.batch_size
        self.resources = pool_resources(self.section_key, section, section.device)
        self.model = None

    @classmethod
    def from_config(cls, cfg):
        return cls(getattr(cfg, cls.section_key))

    def torch_threads(self) -> None:
        """``engine=transformers``: torch's intra-op threads = the actor's CPUs (at least 1)."""
        import torch

        from ocrvl_ray.layout.config import actor_cpus

        torch.set_num_threads(max(1, int(actor_cpus(self.section, self.section.device))))


def check_columns(stages: Iterable[Stage], source: Iterable[str], sink: tuple[str, Iterable[str]]) -> set[str]:
    """Follows the columns from ``source`` (the manifest's) through ``stages`` to ``sink`` (its name and the
    columns it reads); a column read before anything upstream writes it is a one-line ``ConfigError``.
    Returns the columns the sink receives."""
    have, names = set(source), []
    for st in stages:
        names.append(st.name)
        _require(st.name, st.reads, have, names)
        have = (have - set(st.drops)) | set(st.writes) if st.passes_through else set(st.writes)
    _require(sink[0], tuple(sink[1]), have, names + [sink[0]])
    return have


def _require(who: str, reads: tuple[str, ...], have: set[str], names: list[str]) -> None:
    missing = [c for c in reads if c not in have]
    if missing:
        raise ConfigError(f"layout graph: {who} reads {', '.join(missing)} that no stage before it writes "
                          f"(graph: manifest -> {' -> '.join(names)}); fix the stage list or its config")
