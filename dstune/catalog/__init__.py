"""What dstune plans for: model shapes, GPU datasheets and cluster layouts, loaded from data files.

Importing this package loads no heavy library; transformers and pynvml are imported
only by the functions that need them.
"""

from dstune.catalog._cluster import MAX_GPUS_PER_NODE, ClusterSpec, make_cluster
from dstune.catalog._gpus import (
    DEFAULT_GPU_TYPE,
    DetectedGpu,
    GpuSpec,
    detect_local_gpus,
    list_gpus,
    load_gpu,
    resolve_gpu_type,
)
from dstune.catalog._model_lookup import list_models, load_model
from dstune.catalog._models import (
    SUPPORTED_MODEL_TYPES,
    LinearLayer,
    ModelSpec,
)
from dstune.catalog._pairing import default_critic
from dstune.catalog._setup import Setup, resolve_setup
from dstune.catalog._stack_files import stack_from_file
from dstune.catalog._stacks import (
    SETTLE,
    STACK_PACKAGES,
    Stack,
    named_stack,
    named_stacks,
    reference_stack,
    target_transformers,
)

__all__ = [
    "default_critic",
    "DEFAULT_GPU_TYPE",
    "MAX_GPUS_PER_NODE",
    "SUPPORTED_MODEL_TYPES",
    "ClusterSpec",
    "DetectedGpu",
    "GpuSpec",
    "LinearLayer",
    "ModelSpec",
    "Setup",
    "detect_local_gpus",
    "list_gpus",
    "list_models",
    "load_gpu",
    "load_model",
    "make_cluster",
    "resolve_gpu_type",
    "resolve_setup",
    "SETTLE",
    "STACK_PACKAGES",
    "Stack",
    "target_transformers",
    "named_stack",
    "named_stacks",
    "reference_stack",
    "stack_from_file",
]
