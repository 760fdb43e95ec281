"""The built-in training steps, each a registered `dstune.plan.StepStrategy`.

Importing this package registers SFT, RM, PPO and DPO (in `--step` order); a new step is a
module here with a plan dataclass and a strategy class under `@register_step`, plus its cost
terms (dstune.costmodel) and profile worker (dstune.profile), which the strategy names.
"""

# Import order is registration order, which is the order of `--step`'s choices.
from .sft import Sft, SftPlan  # noqa: I001
from .rm import Rm, RmPlan
from .ppo import Ppo, PpoPlan
from .dpo import Dpo, DpoPlan

__all__ = ["Dpo", "DpoPlan", "Ppo", "PpoPlan", "Rm", "RmPlan", "Sft", "SftPlan"]
