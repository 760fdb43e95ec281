#!/usr/bin/env bash
# dstune pick for llama-3-8b group_norm on 8 x H100-80G
# OpenRLHF 0.11.2 (vLLM 0.29.0, DeepSpeed 0.19.6, Ray 2.55.0); start Ray first: ray start --head --num-gpus 8
set -euo pipefail
# Preflight: the installed versions must be the plan's stack (requirements.txt); DSTUNE_SKIP_PREFLIGHT=1 skips it.
if [ -z "${DSTUNE_SKIP_PREFLIGHT:-}" ]; then
  "${PYTHON:-python3}" - 'openrlhf-0.11.2' '{"openrlhf": "==0.11.2", "deepspeed": "==0.19.6", "transformers": "==5.15.0", "huggingface-hub": ">=1.0.0", "vllm": "==0.29.0", "ray": "==2.55.0"}' <<'DSTUNE_PREFLIGHT' || exit 2
import json, re, sys
from importlib import metadata
def release(text):
    return tuple(int(p) for p in re.findall(r"\d+", text.split("+")[0].split("rc")[0].split("dev")[0])[:4])
def holds(version, clause):
    op, want = re.match(r"(===|==|!=|>=|<=|~=|>|<)(.*)", clause).groups()
    if op in ("==", "==="):
        return version == want or ("+" not in want and version.split("+")[0] == want)
    if op == "!=":
        return version.split("+")[0] != want
    have, need = release(version), release(want)
    if op == "~=":
        return have >= need and have[: len(need) - 1] == need[: len(need) - 1]
    return {">=": have >= need, "<=": have <= need, ">": have > need, "<": have < need}[op]
def ok(version, spec):
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version
        return Version(version) in SpecifierSet(spec, prereleases=True)
    except ImportError:  # no packaging: transformers, which needs it, is missing too and said so
        return all(holds(version, c.strip()) for c in spec.split(","))
def installed(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
name, pins = sys.argv[1], json.loads(sys.argv[2])
wrong = []
for package, spec in pins.items():
    version = installed(package)
    if version is None:
        wrong.append(f"{package} not installed (pinned {spec})")
    elif not ok(version, spec):
        wrong.append(f"{package} {version} (pinned {spec})")
if wrong:
    print(f"dstune preflight: this environment is not the plan's stack {name}: " + "; ".join(wrong)
          + "; pip install -r requirements.txt (beside this script), or DSTUNE_SKIP_PREFLIGHT=1 to launch anyway",
          file=sys.stderr)
    sys.exit(2)
DSTUNE_PREFLIGHT
fi

ray job submit --address="http://127.0.0.1:8265" \
   --runtime-env-json='{"working_dir": "/openrlhf"}' \
   -- python3 -m openrlhf.cli.train_ppo_ray \
   --algo.advantage.gamma 1.0 \
   --algo.kl.use_loss \
   --algo.kl.estimator k3 \
   --algo.dynamic_filtering_enable \
   --algo.dynamic_filtering_range 0 1 \
   --actor.eps_clip_low_high 0.2 0.27 \
   --actor.model_name_or_path OpenRLHF/Llama-3-8b-sft-mixture \
   --reward.remote_url /openrlhf/examples/python/reward_func.py \
   --ckpt.output_dir /openrlhf/examples/test_scripts/final/llama3-8b-rlhf \
   --ckpt.path /openrlhf/examples/test_scripts/ckpt/llama3-8b-rlhf \
   --ckpt.save_steps 20 \
   --ckpt.save_hf \
   --data.max_samples 20000 \
   --ds.param_dtype bf16 \
   --actor.adam.lr 5e-7 \
   --data.prompt_dataset OpenRLHF/prompt-collection-v0.1 \
   --data.input_key context_messages \
   --data.apply_chat_template \
   --vllm.sync_backend nccl \
   --algo.advantage.estimator group_norm \
   --algo.kl.init_coef 0.001 \
   --rollout.batch_size 128 \
   --rollout.n_samples_per_prompt 8 \
   --train.colocate_all \
   --vllm.num_engines 4 \
   --vllm.tensor_parallel_size 2 \
   --vllm.gpu_memory_utilization 0.6 \
   --vllm.enable_sleep \
   --vllm.enable_prefix_caching \
   --ds.zero_stage 3 \
   --ds.packing_samples \
   --train.dynamic_batch_enable \
   --train.max_tokens_per_gpu 32768 \
   --rollout.micro_batch_size 16 \
   --actor.gradient_checkpointing_enable
