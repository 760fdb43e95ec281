#!/usr/bin/env bash
# dstune pick for llama-3-8b group_norm on 8 x H100-80G
# OpenRLHF 0.11.2 (vLLM 0.29.0, DeepSpeed 0.19.6, Ray 2.55.0); start Ray first: ray start --head --num-gpus 8
set -euo pipefail
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
   --vllm.gpu_memory_utilization 0.4 \
   --vllm.enable_sleep \
   --ds.zero_stage 3 \
   --ds.packing_samples \
   --train.dynamic_batch_enable \
   --train.max_tokens_per_gpu 32768 \
   --rollout.micro_batch_size 16 \
   --actor.gradient_checkpointing_enable
