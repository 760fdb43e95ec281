import pytest

from dstune.catalog import load_gpu, make_cluster
from dstune.errors import UserInputError

A100 = load_gpu("A100-80G")


def test_single_node_when_gpus_fit():
    cluster = make_cluster(A100, 4)
    assert (cluster.nodes, cluster.gpus_per_node, cluster.world_size) == (1, 4, 4)
    assert cluster.host_memory_per_node_in_GiB == A100.default_host_memory_per_node_in_GiB
    assert cluster.host_memory_per_node_bytes == 1024 * 1024**3
    assert cluster.inter_node_in_GB_per_sec == A100.default_inter_node_in_GB_per_sec


def test_whole_default_nodes():
    cluster = make_cluster(A100, 32)
    assert (cluster.nodes, cluster.gpus_per_node, cluster.world_size) == (4, 8, 32)


def test_explicit_nodes_and_overrides():
    cluster = make_cluster(A100, 12, 3, host_memory_per_node_in_GiB=512, inter_node_in_GB_per_sec=12.5)
    assert (cluster.nodes, cluster.gpus_per_node) == (3, 4)
    assert (cluster.host_memory_per_node_in_GiB, cluster.inter_node_in_GB_per_sec) == (512, 12.5)


def test_workstation_default_node_size():
    cluster = make_cluster(load_gpu("RTX-4090"), 8)
    assert (cluster.nodes, cluster.gpus_per_node) == (2, 4)


@pytest.mark.parametrize(
    "gpus, nodes, message",
    [
        (0, None, "--gpus must be a positive integer, got 0"),
        (-8, None, "--gpus must be a positive integer, got -8"),
        (8, 0, "--nodes must be a positive integer, got 0"),
        (12, 5, r"--gpus 12 is not a multiple of --nodes 5 \(12 % 5 = 2\)"),
        (12, None, r"--gpus 12 does not fill whole 8-GPU nodes \(12 % 8 = 4\); pass --nodes"),
        (32, 1, r"--gpus 32 on 1 node\(s\) puts 32 GPUs in a node \(32 / 1\); at most 16 fit"),
    ],
)
def test_rules(gpus, nodes, message):
    with pytest.raises(UserInputError, match=f"^{message}"):
        make_cluster(A100, gpus, nodes)


def test_overrides_must_be_positive():
    with pytest.raises(UserInputError, match="host_memory_per_node_in_GiB must be positive, got 0"):
        make_cluster(A100, 8, host_memory_per_node_in_GiB=0)


def test_cluster_is_frozen():
    cluster = make_cluster(A100, 8)
    with pytest.raises(AttributeError):
        cluster.nodes = 2  # type: ignore[misc]
