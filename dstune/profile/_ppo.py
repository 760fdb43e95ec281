"""Step 3: DeepSpeed-Chat's PPO iteration (rlhf_engine.py + ppo_trainer.py + step3 main.py loop).

Roles as DeepSpeedRLHFEngine builds them, in its order: actor (train config,
Hybrid Engine when enabled), reference (eval config), critic (reward-model
architecture, train config), reward (eval config). One step =
`generation_batches` x (generate exactly max_answer_seq_len tokens, then the
experience forwards) and `ppo_epochs` x micro-batches of `train_rlhf`.
Rewards-with-KL and GAE advantages are computed inside `train_rlhf`, as
DeepSpeed-Chat does, so they count toward `actor_train`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ._engines import Adapters, apply_lora, eval_engine, train_engine
from ._inputs import TrialInputs, num_padding_at_beginning, synthetic_ids
from ._measure import PhaseTimer
from ._models import build_causal_lm, build_reward_model

ACTOR_LEARNING_RATE = 9.65e-6
CRITIC_LEARNING_RATE = 5e-6
KL_CTL = 0.1
CLIP_REWARD_VALUE = 5.0
CLIP_RANGE = 0.2
CLIP_RANGE_VALUE = 0.2
GAMMA = 1.0
LAM = 0.95
EMA_BETA = 0.992
"""DeepSpeed-Chat's moving_average default (dschat/utils/utils.py)."""


def gather_log_probs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    log_probs = F.log_softmax(logits, dim=-1)
    return log_probs.gather(dim=-1, index=labels.unsqueeze(-1)).squeeze(-1)


def compute_rewards(
    prompts: torch.Tensor,
    log_probs: torch.Tensor,
    ref_log_probs: torch.Tensor,
    reward_score: torch.Tensor,
    action_mask: torch.Tensor,
) -> torch.Tensor:
    rewards = -KL_CTL * (log_probs - ref_log_probs)
    start = prompts.shape[1] - 1
    ends = start + action_mask[:, start:].sum(1) + 1
    reward_clip = torch.clamp(reward_score, -CLIP_REWARD_VALUE, CLIP_REWARD_VALUE)
    for j in range(log_probs.shape[0]):
        rewards[j, start : ends[j]][-1] += reward_clip[j]
    return rewards


def advantages_and_returns(
    values: torch.Tensor, rewards: torch.Tensor, start: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE as in DeepSpeed-Chat (from trlx)."""
    last: torch.Tensor | float = 0.0
    reversed_advantages: list[torch.Tensor] = []
    length = rewards.size(-1)
    for t in reversed(range(start, length)):
        next_values = values[:, t + 1] if t < length - 1 else 0.0
        delta = rewards[:, t] + GAMMA * next_values - values[:, t]
        last = delta + GAMMA * LAM * last
        reversed_advantages.append(last)
    advantages = torch.stack(reversed_advantages[::-1], dim=1)
    return advantages.detach(), advantages + values[:, start:]


def actor_loss_fn(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    ratio = torch.exp((logprobs - old_logprobs) * mask)
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1.0 - CLIP_RANGE, 1.0 + CLIP_RANGE)
    return torch.sum(torch.max(pg_loss1, pg_loss2) * mask) / mask.sum()


def critic_loss_fn(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    clipped = torch.clamp(values, old_values - CLIP_RANGE_VALUE, old_values + CLIP_RANGE_VALUE)
    loss = torch.max((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * torch.sum(loss * mask) / mask.sum()


def ema_update(actor: Any, ema: Any, zero3: bool) -> None:
    """DeepSpeed-Chat's moving_average after each PPO micro-step: lerp every actor parameter into its EMA
    twin, gathering both first at ZeRO-3 (and, as DeepSpeed-Chat does, with no modifier rank)."""
    import deepspeed
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

    with torch.no_grad():
        for param, twin in zip(actor.parameters(), ema.parameters()):
            fetch = [
                t for t in (param, twin) if zero3 and getattr(t, "ds_status", None) == ZeroParamStatus.NOT_AVAILABLE
            ]
            with deepspeed.zero.GatheredParameters(fetch, enabled=bool(fetch)):
                twin.data.copy_(torch.lerp(param.data, twin.data, EMA_BETA))


def _hybrid_engine_kernels(engine: Any) -> bool:
    """True only when DeepSpeed built inference containers (its kernels replace the layers)."""
    return len(getattr(engine, "_inference_containers", ()) or ()) > 0


class HybridEngineStartError(RuntimeError):
    """The Hybrid Engine failed to start where it should run (CUDA): the trial fails, it is not measured
    without the HE under a plan that says enable_hybrid_engine=true."""


def he_startup_fallback(device_type: str, error: BaseException) -> str:
    """The note for measuring without the HE on the CPU (DeepSpeed has no CPU inference kernels, a
    documented fallback: the row says HE was not active); on CUDA the failure is the finding: raised."""
    if device_type == "cuda":
        raise HybridEngineStartError(
            f"Hybrid Engine could not start on CUDA ({type(error).__name__}: {error}); "
            "the trial fails rather than be measured without it"
        ) from error
    return f"Hybrid Engine could not start ({type(error).__name__}: {error}); measured with hybrid_engine disabled"


@dataclass
class PpoStep:
    """Four engines and the synthetic prompts; `run` is one PPO iteration."""

    inputs: TrialInputs
    notes: list[str] = field(default_factory=list)
    he_kernels: bool | None = None
    milestones: dict[str, float] = field(default_factory=dict)
    """Wall-clock time each role's engine was ready (start-up accounting)."""

    def __post_init__(self) -> None:
        p = self.inputs.plan
        cfg = self.inputs.ds_configs
        actor_hf = self.inputs.model["hf_config"]
        critic_hf = (self.inputs.critic_model or self.inputs.model)["hf_config"]
        self.actor = self._build_actor(actor_hf, cfg["actor"], p)
        self.milestones["actor_built"] = time.time()
        self.ref = eval_engine(build_causal_lm(actor_hf, cfg["ref"]), cfg["ref"])
        self.milestones["ref_built"] = time.time()
        self.ema = None
        if p.get("enable_ema"):  # rlhf_engine._init_ema: the actor again, LoRA as the actor's, the ref's eval config
            ema = build_causal_lm(actor_hf, cfg["ref"])
            apply_lora(ema, Adapters(p["actor_lora_dim"], p["actor_lora_module_name"], p["only_optimize_lora"]))
            self.ema = eval_engine(ema, cfg["ref"])
            self.notes.append("EMA copy of the actor kept and updated after every micro-step (enable_ema)")
            self.milestones["ema_built"] = time.time()
        critic = build_reward_model(critic_hf, cfg["critic"], num_padding_at_beginning(critic_hf))
        apply_lora(critic, Adapters(p["critic_lora_dim"], p["critic_lora_module_name"], p["only_optimize_lora"]))
        self.critic, _ = train_engine(critic, cfg["critic"], offload=p["offload"], lr=CRITIC_LEARNING_RATE)
        self.milestones["critic_built"] = time.time()
        reward = build_reward_model(critic_hf, cfg["reward"], num_padding_at_beginning(critic_hf))
        self.reward = eval_engine(reward, cfg["reward"])
        self.milestones["reward_built"] = time.time()
        if p["critic_gradient_checkpointing"]:
            self.critic.module.gradient_checkpointing_enable()

        self.prompt_len = p["max_prompt_seq_len"]
        self.answer_len = p["max_answer_seq_len"]
        self.gen_bs = p["per_device_generation_batch_size"]
        self.train_bs = p["per_device_training_batch_size"]
        self.generation_batches = p["generation_batches"]
        self.ppo_epochs = p["ppo_epochs"]
        self.z3 = p["actor_zero_stage"] == 3
        self.pad_id = int(self.actor.module.config.pad_token_id)
        generator = torch.Generator().manual_seed(self.inputs.seed)
        self.prompts = [
            synthetic_ids(actor_hf, self.gen_bs, self.prompt_len, self.inputs.device, generator)
            for _ in range(self.generation_batches)
        ]
        self.samples_per_step_per_rank = self.gen_bs * self.generation_batches
        self.tokens_per_step_per_rank = self.samples_per_step_per_rank * (self.prompt_len + self.answer_len)

    def _build_actor(self, hf: dict[str, Any], config: dict[str, Any], p: dict[str, Any]) -> Any:
        """The actor engine; when the Hybrid Engine cannot start here, the plain engine, said so."""
        adapters = Adapters(p["actor_lora_dim"], p["actor_lora_module_name"], p["only_optimize_lora"])

        def build(cfg: dict[str, Any]) -> Any:
            model = build_causal_lm(hf, cfg)
            apply_lora(model, adapters)
            engine, optimizer = train_engine(model, cfg, offload=p["offload"], lr=ACTOR_LEARNING_RATE)
            self.notes.append(f"optimizer: {optimizer}")
            return engine

        if not config.get("hybrid_engine", {}).get("enabled"):
            return build(config)
        try:
            engine = build(config)
        except Exception as error:  # noqa: BLE001 - e.g. "This op had not been implemented on CPU backend."
            if isinstance(error, getattr(torch, "OutOfMemoryError", ())):
                raise
            self.notes.append(he_startup_fallback(self.inputs.device.type, error))
            self.he_kernels = False
            return build({**config, "hybrid_engine": {**config["hybrid_engine"], "enabled": False}})
        self.he_kernels = _hybrid_engine_kernels(engine)
        if not self.he_kernels:
            self.notes.append(
                f"Hybrid Engine made no inference containers for {type(engine.module).__name__} "
                "(DeepSpeed found no compatible policy); generation used the model's own generate()"
            )
        return engine

    # -- experience ---------------------------------------------------------------------------

    def _generate(self, prompts: torch.Tensor) -> torch.Tensor:
        from transformers import GenerationConfig

        config = self.actor.module.config
        generation = GenerationConfig(
            max_new_tokens=self.answer_len,
            min_new_tokens=self.answer_len,
            do_sample=False,
            num_beams=1,
            pad_token_id=self.pad_id,
            eos_token_id=config.eos_token_id,
            bos_token_id=config.bos_token_id,
            use_cache=True,
        )
        kwargs = dict(
            attention_mask=torch.ones_like(prompts),
            generation_config=generation,
            synced_gpus=self.z3 and self.inputs.world_size > 1,
        )
        with torch.no_grad():
            if self.he_kernels:
                try:
                    return self.actor.generate(prompts, **kwargs)
                except AttributeError as error:
                    if "_generate" not in str(error):
                        raise
                    self.he_kernels = False
                    self.notes.append(f"Hybrid Engine generate() failed ({error}); fell back to the module's")
            return self.actor.module.generate(prompts, **kwargs)

    def _experience(self, prompts: torch.Tensor, timer: PhaseTimer) -> dict[str, torch.Tensor]:
        with timer.phase("generation"):
            for engine in (self.actor, self.ref, self.critic, self.reward):
                engine.eval()
            seq = self._generate(prompts)
        expected = self.prompt_len + self.answer_len
        if seq.shape[1] != expected:
            raise RuntimeError(
                f"generation returned {seq.shape[1]} tokens, expected {expected} "
                f"({self.prompt_len} prompt + {self.answer_len} answer)"
            )
        with timer.phase("experience"):
            self.actor.train()
            self.critic.train()
            mask = seq.not_equal(self.pad_id).long()
            with torch.no_grad():
                logits = self.actor(seq, attention_mask=mask).logits
                ref_logits = self.ref(seq, attention_mask=mask).logits
                reward = self.reward.forward_value(seq, mask, prompt_length=self.prompt_len)["chosen_end_scores"]
                values = self.critic.forward_value(seq, mask, return_value_only=True)[:, :-1]
            experience = {
                "prompts": prompts,
                "logprobs": gather_log_probs(logits[:, :-1, :], seq[:, 1:]),
                "ref_logprobs": gather_log_probs(ref_logits[:, :-1, :], seq[:, 1:]),
                "value": values,
                "rewards": reward,
                "input_ids": seq,
                "attention_mask": mask,
            }
        return experience

    # -- training -----------------------------------------------------------------------------

    def _train_rlhf(self, inputs: dict[str, torch.Tensor], timer: PhaseTimer) -> None:
        with timer.phase("actor_train"):
            prompts, seq, attention_mask = inputs["prompts"], inputs["input_ids"], inputs["attention_mask"]
            log_probs, old_values = inputs["logprobs"], inputs["value"]
            start = prompts.size(-1) - 1
            action_mask = attention_mask[:, 1:]
            with torch.no_grad():
                old_rewards = compute_rewards(
                    prompts, log_probs, inputs["ref_logprobs"], inputs["rewards"], action_mask
                )
                ends = start + action_mask[:, start:].sum(1) + 1
                for i in range(old_rewards.shape[0]):
                    old_rewards[i, ends[i] :] = 0
                    old_values[i, ends[i] :] = 0
                advantages, returns = advantages_and_returns(old_values, old_rewards, start)
            logits = self.actor(input_ids=seq, attention_mask=attention_mask, use_cache=False).logits
            actor_log_prob = gather_log_probs(logits[:, :-1, :], seq[:, 1:])
            actor_loss = actor_loss_fn(
                actor_log_prob[:, start:], log_probs[:, start:], advantages, action_mask[:, start:]
            )
            self.actor.backward(actor_loss)
            self.actor.step()
        with timer.phase("critic_train"):
            value = self.critic.forward_value(seq, attention_mask, return_value_only=True, use_cache=False)[:, :-1]
            critic_loss = critic_loss_fn(value[:, start:], old_values[:, start:], returns, action_mask[:, start:])
            self.critic.backward(critic_loss)
            self.critic.step()
            if self.ema is not None:  # step-3 main.py runs it after train_rlhf; the cost model counts it here too
                ema_update(self.actor, self.ema, self.z3)

    def _micro_batches(self, experiences: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
        """MiniDataset: each generated batch cut into per_device_training_batch_size slices."""
        batches = []
        for experience in experiences:
            for i in range(0, self.gen_bs, self.train_bs):
                batches.append({k: v[i : i + self.train_bs] for k, v in experience.items()})
        return batches

    def run(self, timer: PhaseTimer) -> None:
        experiences = [self._experience(prompts, timer) for prompts in self.prompts]
        batches = self._micro_batches(experiences)
        actor_checkpointing = self.inputs.plan["actor_gradient_checkpointing"]
        if actor_checkpointing:
            self.actor.module.gradient_checkpointing_enable()
        for _ in range(self.ppo_epochs):
            for batch in batches:
                self._train_rlhf(batch, timer)
        if actor_checkpointing:
            self.actor.module.gradient_checkpointing_disable()
