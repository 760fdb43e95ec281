"""What an estimate, a trial or a study runs on: the step, its models and the cluster."""

from __future__ import annotations

from dataclasses import dataclass

from dstune.catalog._cluster import ClusterSpec, make_cluster
from dstune.catalog._gpus import load_gpu, resolve_gpu_type
from dstune.catalog._model_lookup import load_model
from dstune.catalog._models import ModelSpec
from dstune.catalog._pairing import default_critic


@dataclass(frozen=True)
class Setup:
    """The specs one estimate, trial or search is about; enough to re-predict a measurement."""

    step: str
    model: ModelSpec
    critic_model: ModelSpec | None
    """The critic/reward model of a step that has one, else None."""
    cluster: ClusterSpec
    gpu_note: str = ""
    """Where the GPU type came from (detected, assumed, --gpu-type), said in the output."""


def resolve_setup(
    *,
    step: str,
    model: str,
    gpus: int,
    with_critic: bool,
    nodes: int | None = None,
    gpu_type: str = "auto",
    critic_model: str | None = None,
) -> Setup:
    """Catalog names to specs. The catalog sits below the step strategies, so the caller says
    whether the step holds a critic; without a named one it is the actor's shipped pairing."""
    actor = load_model(model)
    critic = None
    if with_critic:
        critic = load_model(critic_model) if critic_model else default_critic(actor)
    if gpu_type == "auto":
        gpu, note = resolve_gpu_type("auto")
    else:
        gpu = load_gpu(gpu_type)
        note = f"using {gpu.name} (--gpu-type)"
    return Setup(step, actor, critic, make_cluster(gpu, gpus, nodes), note)
