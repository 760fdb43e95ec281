"""The software stack a plan targets: the versions that change what runs, and the HE verdicts recorded for them.

The machine dstune runs on is seldom the one that trains, so the stack is an input: a named stack of
data/stacks.json, `local` (what is installed here, resolved in dstune.doctor, which probes it), or a file
from the cluster (`pip freeze`, a requirements file, or a saved `dstune doctor --json`; `_stack_files`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserInputError

STACKS_FILE = Path(__file__).parent / "data" / "stacks.json"
STACK_PACKAGES: tuple[str, ...] = tuple(json.loads(STACKS_FILE.read_text(encoding="utf-8"))["packages"])
"""Distributions whose versions change what a plan does (pinned by the export, checked before launch);
listed in data/stacks.json with the stacks that pin them."""
HE_VERDICTS = ("kernels", "no kernels", "broken")
SDPA_DEFAULT_FROM = "4.36"
"""transformers made SDPA the default attention of LLaMA in 4.36 (Dec 2023); before it every family in the
catalog ran attention eagerly, which keeps s^2 probabilities (costmodel/data/activations.json 'published')."""
SETTLE = "to settle it, run `dstune doctor --json > stack.json` on the cluster and pass --stack stack.json"


def canonical(name: str) -> str:
    """PEP 503 names as this module keys them: huggingface-hub and Huggingface_Hub -> huggingface_hub."""
    return name.strip().lower().replace("-", "_").replace(".", "_")


@dataclass(frozen=True, kw_only=True)
class Stack:
    """One target stack: pins per distribution and the Hybrid Engine verdict per model family."""

    name: str
    """A name of data/stacks.json, `local`, or the file it was read from."""
    requires: Mapping[str, str] = field(default_factory=dict)
    """Distribution -> PEP 440 specifier ("==4.48.3", ">=0.21,<0.22"); absent: not pinned."""
    he_verdicts: Mapping[str, str | None] = field(default_factory=dict)
    """Family -> kernels, no kernels or broken; absent or None: unknown on this stack."""
    framework: str | None = None
    description: str = ""
    sources: tuple[str, ...] = ()
    torch_cuda: str | None = None
    """The CUDA torch was built with, where the stack says (a doctor --json does)."""
    verdicts_from: str = ""
    """Where the verdicts come from (recorded data, this machine's probe, a cluster's doctor)."""

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.requires.items())), tuple(sorted(self.he_verdicts.items()))))

    def version(self, package: str) -> str | None:
        """The exact version when the stack pins one (==X), else None."""
        spec = self.requires.get(canonical(package), "")
        if spec.startswith("==") and "," not in spec and "*" not in spec:
            return spec[2:].strip()
        return None

    @property
    def versions(self) -> dict[str, str | None]:
        """Distribution -> exact version (None where unpinned): what the known-issue matcher compares."""
        return {package: self.version(package) for package in STACK_PACKAGES}

    @property
    def transformers_version(self) -> str | None:
        """The cost model's input for terms that changed with transformers (None: not pinned)."""
        return self.version("transformers")

    def he_verdict(self, family: str) -> str | None:
        return self.he_verdicts.get(family)

    @property
    def he_kernels(self) -> dict[str, bool | None]:
        """Family -> whether DeepSpeed builds inference containers (broken: it does, then crashes)."""
        return {f: (None if v is None else v != "no kernels") for f, v in self.he_verdicts.items()}

    @property
    def eager_attention(self) -> bool | None:
        """Whether transformers' default attention keeps the s^2 scores (None: transformers not pinned)."""
        version = self.transformers_version
        if version is None:
            return None
        from packaging.version import Version

        return Version(version) < Version(SDPA_DEFAULT_FROM)

    @property
    def label(self) -> str:
        """e.g. "he (deepspeed 0.19.8, transformers 4.48.3)"."""
        shown = [
            f"{p} {self.version(p) or self.requires[p]}" for p in ("deepspeed", "transformers") if p in self.requires
        ]
        return f"{self.name} ({', '.join(shown)})" if shown else self.name

    def requirement_lines(self) -> list[str]:
        """`package<spec>` per pinned distribution, in STACK_PACKAGES order (a requirements.txt's body)."""
        return [f"{p.replace('_', '-')}{self.requires[p]}" for p in STACK_PACKAGES if p in self.requires]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "framework": self.framework,
            "requires": dict(self.requires),
            "torch_cuda": self.torch_cuda,
            "he_verdicts": dict(self.he_verdicts),
            "verdicts_from": self.verdicts_from,
            "description": self.description,
            "sources": list(self.sources),
        }


def _stack(raw: Mapping[str, Any]) -> Stack:
    verdicts = dict(raw.get("he_verdicts") or {})
    bad = [v for v in verdicts.values() if v not in HE_VERDICTS]
    if bad:
        raise ValueError(f"stack {raw['name']}: HE verdict {bad[0]!r} is none of {', '.join(HE_VERDICTS)}")
    return Stack(
        name=raw["name"],
        requires={canonical(p): str(s) for p, s in (raw.get("requires") or {}).items()},
        he_verdicts=verdicts,
        framework=raw.get("framework"),
        description=raw.get("description", ""),
        sources=tuple(raw.get("sources") or ()),
        verdicts_from=f"recorded for {raw['name']} (dstune/catalog/data/stacks.json)",
    )


@functools.cache
def named_stacks() -> tuple[Stack, ...]:
    """data/stacks.json, in its order (newest first within a framework)."""
    return tuple(_stack(raw) for raw in json.loads(STACKS_FILE.read_text(encoding="utf-8"))["stacks"])


def named_stack(name: str) -> Stack:
    for stack in named_stacks():
        if stack.name == name:
            return stack
    raise UserInputError(
        f"--stack {name}: no such stack; choose one of {', '.join(s.name for s in named_stacks())}, local, "
        "or a file (pip freeze output, a requirements file or a saved `dstune doctor --json`)"
    )


def reference_stack(framework: str, family: str | None = None, runs: Callable[[Stack], bool] | None = None) -> Stack:
    """The framework's default target: the newest named stack on which the family's HE kernels hold and, when
    `runs` is given, on which it holds (the shipped script breaks none of that stack's rules); else the newest
    where the kernels hold; else the framework's newest."""
    own = [s for s in named_stacks() if s.framework == framework]
    if not own:
        raise ValueError(f"no named stack for framework {framework!r} in {STACKS_FILE.name}")
    holding = [s for s in own if family is not None and s.he_verdict(family) == "kernels"]
    running = [s for s in holding if runs is not None and runs(s)]
    return (running or holding or own)[0]


def recorded_verdicts(requires: Mapping[str, str]) -> tuple[dict[str, str | None], str]:
    """The verdicts of the named stack whose deepspeed and transformers pins these versions equal, if any."""
    for stack in named_stacks():
        pins = [(p, stack.version(p)) for p in ("deepspeed", "transformers")]
        if all(v is not None and requires.get(p) == f"=={v}" for p, v in pins):
            return dict(stack.he_verdicts), f"recorded for {stack.name} (same deepspeed and transformers)"
    return {}, ""


def target_transformers(stack: Stack | None) -> str:
    """The cost model's transformers input for a target stack: its pin, or "" (the cost model's default) where
    there is no target or transformers is not pinned."""
    return (stack.transformers_version or "") if stack is not None else ""
