"""The released OpenRLHF 0.11.2 wheel, read in place (never installed): `bash scripts/setup.sh --test`
downloads it into .wheels/ (`pip download --no-deps openrlhf==0.11.2 -d .wheels`)."""

from __future__ import annotations

import ast
import builtins
import os
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import pytest

from dstune.frameworks.openrlhf._parser import CONFIG, DS_UTILS, ENTRY, find_wheel, wheel_source

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def wheel() -> Path:
    folders = [ROOT / ".wheels"] + ([Path(os.environ["DSTUNE_WHEELS"])] if "DSTUNE_WHEELS" in os.environ else [])
    found = find_wheel("0.11.2", folders)
    if found is None:
        pytest.skip("openrlhf-0.11.2 wheel absent from .wheels/: run `bash scripts/setup.sh --test` (it downloads it)")
    return found


@pytest.fixture(scope="session")
def sources(wheel: Path) -> tuple[str, str]:
    return wheel_source(wheel, ENTRY), wheel_source(wheel, CONFIG)


STRATEGY = "openrlhf/utils/deepspeed/deepspeed.py"


@pytest.fixture(scope="session")
def builders(wheel: Path) -> types.SimpleNamespace:
    pytest.importorskip("deepspeed")
    utils = types.ModuleType("deepspeed_utils")
    exec(compile(wheel_source(wheel, DS_UTILS), DS_UTILS, "exec"), utils.__dict__)
    tree = ast.parse(wheel_source(wheel, STRATEGY))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DeepspeedStrategy")
    wanted = [
        f
        for f in cls.body
        if isinstance(f, ast.FunctionDef) and f.name in ("get_ds_train_config", "get_ds_eval_config")
    ]
    scope: dict[str, Any] = {"Optional": Optional, **utils.__dict__}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), STRATEGY, "exec"), scope)
    return types.SimpleNamespace(
        train=scope["get_ds_train_config"], eval=scope["get_ds_eval_config"], strategy=_strategy
    )


def _strategy(args: Any) -> types.SimpleNamespace:
    """The attributes DeepspeedStrategy.__init__ sets from get_strategy(args) (utils/utils.py)."""
    return types.SimpleNamespace(
        stage=args.ds.zero_stage,
        train_batch_size=args.train.batch_size,
        micro_train_batch_size=args.train.micro_batch_size,
        param_dtype=args.ds.param_dtype,
        max_norm=1.0,
        adam_offload=args.ds.adam_offload,
        zpg=args.ds.zpg,
        use_ds_universal_ckpt=args.ds.use_universal_ckpt,
        grad_accum_dtype=args.ds.grad_accum_dtype,
        overlap_comm=args.ds.overlap_comm,
        deepcompile=args.ds.deepcompile,
        ds_tensor_parallel_size=args.ds.tensor_parallel_size,
        ring_attn_size=args.ds.ring_attn_size,
        use_dynamic_batch=args.train.dynamic_batch_enable,
    )


TOTAL_GPUS = 64
"""One local Ray node declares this many GPUs; a smaller cluster is the rest held by a placement group."""
READY_S = 10.0
"""A placement that is not ready by then would wait forever on a real cluster of that size."""


class _Handle:
    """A scheduled Ray actor as train() sees it: any method's `.remote()` answers at once."""

    def __getattr__(self, name: str) -> Any:
        import ray

        return types.SimpleNamespace(remote=lambda *a, **k: ray.put(("127.0.0.1", 29500)))


class Demands:
    """What train() asks of each bundle (fractional GPUs of its Ray actors and vLLM workers) and of the node."""

    def __init__(self) -> None:
        self.bundles: dict[tuple[Any, int], float] = {}
        self.lone: list[float] = []

    def actor_type(self) -> Any:
        demands = self

        class _Options:
            def __init__(self, kw: dict[str, Any]) -> None:
                self.kw = kw

            def remote(self, *args: Any, **kwargs: Any) -> _Handle:
                strategy = self.kw.get("scheduling_strategy")
                gpus = float(self.kw.get("num_gpus") or 0)
                indices = kwargs.get("bundle_indices")
                if indices:  # a vLLM engine with TP > 1: its workers take kwargs num_gpus on each bundle
                    for i in indices:
                        key = (strategy.placement_group.id, int(i))
                        demands.bundles[key] = demands.bundles.get(key, 0.0) + float(kwargs["num_gpus"])
                elif strategy is not None:
                    key = (strategy.placement_group.id, int(strategy.placement_group_bundle_index))
                    demands.bundles[key] = demands.bundles.get(key, 0.0) + gpus
                else:
                    demands.lone.append(gpus)
                return _Handle()

        return types.SimpleNamespace(options=lambda **kw: _Options(kw))


class _Placed(Exception):
    """train() got past every placement (it imports its trainer next)."""


def _extract(source: str, names: set[str], scope: dict[str, Any], filename: str) -> dict[str, Any]:
    tree = ast.parse(source)
    body = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name in names]
    exec(compile(ast.Module(body=body, type_ignores=[]), filename, "exec"), scope)
    return scope


@pytest.fixture(scope="session")
def local_ray() -> Any:
    ray = pytest.importorskip("ray", reason="ray absent: the local-Ray placement check runs in .venv-ray")
    ray.init(num_cpus=4 * TOTAL_GPUS, num_gpus=TOTAL_GPUS, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def place(local_ray: Any, wheel: Path) -> Callable[[Any, int], Demands]:
    """Run the wheel's own train() (train_ppo_ray.py) up to its trainer, with its real RayActorGroup
    (launcher.py) and create_vllm_engines (vllm_engine.py): every placement group is real and must be ready
    within READY_S on a cluster of `gpus` GPUs; the Ray actors are recorded, not started (each would be a
    process), and their demands must fit the bundles they name."""
    from packaging import version
    from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    ray = local_ray
    root = "openrlhf/trainer/ray/"
    utils = _extract(wheel_source(wheel, root + "utils.py"), {"get_bundle_indices"}, {}, root + "utils.py")

    def place(args: Any, gpus: int) -> Demands:
        groups: list[Any] = []
        demands = Demands()

        def _group(bundles: list[dict[str, float]], strategy: str = "PACK") -> Any:
            groups.append(placement_group(bundles, strategy=strategy))
            return groups[-1]

        def _get(refs: Any, timeout: float | None = None) -> Any:
            return ray.get(refs, timeout=READY_S)

        proxy = types.SimpleNamespace(get=_get, is_initialized=lambda: True, put=ray.put, util=ray.util)
        common = {
            "ray": proxy,
            "placement_group": _group,
            "PlacementGroupSchedulingStrategy": PlacementGroupSchedulingStrategy,
            "get_bundle_indices": utils["get_bundle_indices"],
            "Optional": Optional,
            "List": list,
            "Any": Any,
            "Dict": dict,
            "Type": type,
            "PlacementGroup": Any,
            "version": version,
            "vllm": types.SimpleNamespace(__version__="0.29.0"),
        }
        engine = _extract(
            wheel_source(wheel, root + "vllm_engine.py"),
            {"create_vllm_engines", "batch_vllm_engine_call"},
            {**common, "RolloutRayActor": demands.actor_type()},
            root + "vllm_engine.py",
        )
        launcher = _extract(wheel_source(wheel, root + "launcher.py"), {"RayActorGroup"}, dict(common), "launcher.py")
        real_import = builtins.__import__

        def _import(name: str, *rest: Any, **kw: Any) -> Any:
            if name.startswith("openrlhf.trainer.ppo_trainer"):
                raise _Placed
            return real_import(name, *rest, **kw)

        kind = demands.actor_type()
        scope = {
            **common,
            "__builtins__": {**vars(builtins), "__import__": _import},
            "os": __import__("os"),
            "create_vllm_engines": engine["create_vllm_engines"],
            "RayActorGroup": launcher["RayActorGroup"],
            "get_strategy": lambda a: types.SimpleNamespace(print=lambda *x: None),
            **{n: kind for n in ("PolicyModelActor", "CriticModelActor", "ReferenceModelActor", "RewardModelActor")},
        }
        train = _extract(wheel_source(wheel, "openrlhf/cli/train_ppo_ray.py"), {"train"}, scope, "train_ppo_ray.py")
        filler = placement_group([{"GPU": 1, "CPU": 1}] * (TOTAL_GPUS - gpus)) if gpus < TOTAL_GPUS else None
        try:
            if filler is not None:
                ray.get(filler.ready(), timeout=READY_S)
            with pytest.raises(_Placed):
                train["train"](args)
            lone = _group([{"GPU": g, "CPU": 1} for g in demands.lone if g]) if any(demands.lone) else None
            if lone is not None:  # actors outside any group reserve their GPUs as Ray would
                ray.get(lone.ready(), timeout=READY_S)
            sizes = {g.id: [b.get("GPU", 0) for b in placement_group_table(g)["bundles"].values()] for g in groups}
            for (pg, index), want in demands.bundles.items():
                assert index < len(sizes[pg]), f"bundle {index} of a group of {len(sizes[pg])}"
                assert want <= sizes[pg][index] + 1e-9, f"bundle {index} asked for {want} GPUs"
        finally:
            for group in [*groups, *([filler] if filler else [])]:
                remove_placement_group(group)
            _wait_free(ray)
        return demands

    return place


def _wait_free(ray: Any) -> None:
    import time

    deadline = time.monotonic() + READY_S
    while ray.available_resources().get("GPU", 0) < TOTAL_GPUS and time.monotonic() < deadline:
        time.sleep(0.05)
