"""The hardware a plan runs on: GPUs, how they are split into nodes, and the host side."""

from __future__ import annotations

from dataclasses import dataclass

from dstune.catalog._gpus import GpuSpec
from dstune.errors import UserInputError

MAX_GPUS_PER_NODE = 16
"""The largest single-node NVLink systems (DGX-2, HGX-2) hold 16 GPUs."""

_GiB = 1024**3


@dataclass(frozen=True, kw_only=True)
class ClusterSpec:
    """Identical nodes of identical GPUs; bandwidths as in `GpuSpec` (per GPU, unidirectional)."""

    gpu: GpuSpec
    gpus_per_node: int
    nodes: int
    inter_node_in_GB_per_sec: float
    """Network bandwidth per GPU across nodes (node NIC total / GPUs per node)."""
    host_memory_per_node_in_GiB: float

    @property
    def world_size(self) -> int:
        return self.gpus_per_node * self.nodes

    @property
    def host_memory_per_node_bytes(self) -> int:
        return int(self.host_memory_per_node_in_GiB * _GiB)


def make_cluster(
    gpu: GpuSpec,
    gpus: int,
    nodes: int | None = None,
    *,
    host_memory_per_node_in_GiB: float | None = None,
    inter_node_in_GB_per_sec: float | None = None,
) -> ClusterSpec:
    """Split `gpus` into nodes, filling whole default-size nodes when `nodes` is not given."""
    _require_positive("--gpus", gpus)
    if nodes is not None:
        _require_positive("--nodes", nodes)
        if gpus % nodes:
            raise UserInputError(
                f"--gpus {gpus} is not a multiple of --nodes {nodes} ({gpus} % {nodes} = {gpus % nodes})"
            )
    elif gpus <= gpu.default_gpus_per_node:
        nodes = 1
    else:
        per_node = gpu.default_gpus_per_node
        if gpus % per_node:
            raise UserInputError(
                f"--gpus {gpus} does not fill whole {per_node}-GPU nodes "
                f"({gpus} % {per_node} = {gpus % per_node}); pass --nodes"
            )
        nodes = gpus // per_node
    per_node = gpus // nodes
    if per_node > MAX_GPUS_PER_NODE:
        raise UserInputError(
            f"--gpus {gpus} on {nodes} node(s) puts {per_node} GPUs in a node ({gpus} / {nodes}); "
            f"at most {MAX_GPUS_PER_NODE} fit, pass more --nodes"
        )
    for flag, value in (
        ("host_memory_per_node_in_GiB", host_memory_per_node_in_GiB),
        ("inter_node_in_GB_per_sec", inter_node_in_GB_per_sec),
    ):
        if value is not None and not value > 0:
            raise UserInputError(f"{flag} must be positive, got {value}")
    return ClusterSpec(
        gpu=gpu,
        gpus_per_node=per_node,
        nodes=nodes,
        inter_node_in_GB_per_sec=(
            gpu.default_inter_node_in_GB_per_sec if inter_node_in_GB_per_sec is None else inter_node_in_GB_per_sec
        ),
        host_memory_per_node_in_GiB=(
            gpu.default_host_memory_per_node_in_GiB
            if host_memory_per_node_in_GiB is None
            else host_memory_per_node_in_GiB
        ),
    )


def _require_positive(flag: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserInputError(f"{flag} must be a positive integer, got {value}")
