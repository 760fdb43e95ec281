"""dstune: benchmark and auto-tune RLHF training throughput on DeepSpeed.

Heavy libraries (torch, deepspeed, transformers, optuna) are imported lazily
inside the modules that need them, so `dstune --help` starts at once.
"""

__version__ = "0.1.0"
