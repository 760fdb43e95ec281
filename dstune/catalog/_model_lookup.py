"""Model look-up: a catalog name, a Hugging Face id alias or cache entry, or a local config.json, to a `ModelSpec`.

Files are checked before transformers sees them, so a bad config fails in one line that names the field.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from dstune.catalog._models import ModelSpec, _require_supported, spec_from_hf_config
from dstune.errors import UnknownModelError, UserInputError


@functools.lru_cache(maxsize=1)
def _catalog() -> tuple[ModelSpec, ...]:
    folder = resources.files("dstune.catalog") / "data" / "models"
    specs = []
    for entry in folder.iterdir():
        if entry.name.endswith(".json"):
            data = json.loads(entry.read_text(encoding="utf-8"))
            specs.append(spec_from_hf_config(data["name"], data["hf_config"], tuple(data.get("aliases", ()))))
    return tuple(sorted(specs, key=lambda s: (s.family, s.num_params, s.name)))


def list_models() -> list[ModelSpec]:
    """Catalog models sorted by family, then size."""
    return list(_catalog())


def load_model(name_or_path: str) -> ModelSpec:
    """Resolve a catalog name, a Hugging Face id alias, or a local config.json (file or directory)."""
    wanted = name_or_path.strip().lower()
    for spec in _catalog():
        if spec.name.lower() == wanted or wanted in (a.lower() for a in spec.aliases):
            return spec
    path = Path(name_or_path).expanduser()
    if path.is_file() and path.name.endswith(".json"):
        return _load_local(path.parent, path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UnknownModelError(f"directory '{name_or_path}' has no config.json")
        return _load_local(path, path / "config.json")
    if name_or_path.endswith(".json") or name_or_path.startswith((".", "/", "~")):
        raise UnknownModelError(f"no such config file or directory '{name_or_path}'")
    if name_or_path.count("/") == 1:
        cached = _hf_cache_snapshot(name_or_path)
        if cached is None:
            raise UnknownModelError(
                f"Hugging Face id '{name_or_path}' is neither a catalog alias nor in the local Hugging Face cache; "
                "pass its config directory or config.json (dstune never downloads)"
            )
        return _load_local(cached, cached / "config.json", name=name_or_path)
    raise UnknownModelError(f"unknown model '{name_or_path}'; {_suggestions(name_or_path)} (see 'dstune models')")


def _hf_cache_snapshot(repo_id: str) -> Path | None:
    """The newest snapshot folder with a config.json in the Hugging Face hub cache layout, if any."""
    home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    hub = Path(os.environ.get("HF_HUB_CACHE") or home / "hub")
    snapshots = hub / ("models--" + repo_id.replace("/", "--")) / "snapshots"
    found = sorted(snapshots.glob("*/config.json"), key=lambda p: p.stat().st_mtime) if snapshots.is_dir() else []
    return found[-1].parent if found else None


_COST_FIELDS: dict[str, tuple[str, ...]] = {
    "opt": ("hidden_size", "num_hidden_layers", "num_attention_heads", "ffn_dim", "vocab_size"),
    "llama": ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"),
}
"""Fields that set every size and FLOP count; a config without them would silently take transformers' defaults."""


def _read_config(config_file: Path) -> dict[str, Any]:
    try:
        with open(config_file, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserInputError(f"cannot read model config '{config_file}': {exc}") from None
    if not isinstance(raw, dict):
        raise UserInputError(f"model config '{config_file}' is not a JSON object")
    return raw


def _require_cost_fields(name: str, raw: Mapping[str, Any], model_type: str) -> None:
    """Refuse rather than warn: a misspelt field would otherwise size a different model without a word."""
    wanted = _COST_FIELDS["opt" if model_type == "opt" else "llama"]
    missing = [f for f in wanted if f not in raw]
    if missing:
        raise UserInputError(
            f"model config '{name}' lacks {', '.join(missing)}; dstune will not size it with transformers' defaults"
        )


_SIZE_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "ffn_dim",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
    "word_embed_proj_dim",
)


def _check_raw_shape(name: str, raw: Mapping[str, Any]) -> None:
    """The same rules as `validate_shape`, on the file's values, before transformers sees them."""
    present = {k: raw[k] for k in _SIZE_FIELDS if raw.get(k) is not None}
    not_int = [k for k, v in present.items() if isinstance(v, bool) or not isinstance(v, int)]
    if not_int:
        raise UserInputError(f"model config '{name}': {', '.join(not_int)} must be whole numbers")
    bad = [f"{k}={v}" for k, v in present.items() if v <= 0]
    if bad:
        raise UserInputError(f"model '{name}' has non-positive {', '.join(bad)}")
    hidden, heads = present.get("hidden_size"), present.get("num_attention_heads")
    if hidden and heads and hidden % heads and "head_dim" not in present:
        raise UserInputError(f"model '{name}': num_attention_heads={heads} does not divide hidden_size={hidden}")
    kv = present.get("num_key_value_heads")
    if kv and heads and heads % kv:
        raise UserInputError(f"model '{name}': num_key_value_heads={kv} does not divide num_attention_heads={heads}")


def validate_shape(spec: ModelSpec) -> ModelSpec:
    """Refuse shapes no model has (a negative width gives negative times that look feasible)."""
    sizes = {
        "hidden_size": spec.hidden_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads,
        "head_dim": spec.head_dim,
        "ffn size": spec.ffn_size,
        "vocab_size": spec.vocab_size,
        "max_position_embeddings": spec.max_positions,
        "word_embed_proj_dim": spec.word_embed_proj_dim,
    }
    bad = [f"{k}={v}" for k, v in sizes.items() if v <= 0]
    if bad:
        raise UserInputError(f"model '{spec.name}' has non-positive {', '.join(bad)}")
    if spec.family == "opt" and spec.hidden_size % spec.num_heads:
        raise UserInputError(
            f"model '{spec.name}': num_attention_heads={spec.num_heads} does not divide hidden_size={spec.hidden_size}"
        )
    if spec.num_heads % spec.num_kv_heads:
        raise UserInputError(
            f"model '{spec.name}': num_key_value_heads={spec.num_kv_heads} does not divide "
            f"num_attention_heads={spec.num_heads}"
        )
    return spec


def _load_local(directory: Path, config_file: Path, name: str | None = None) -> ModelSpec:
    raw = _read_config(config_file)
    name = name or os.path.basename(os.path.abspath(directory))
    model_type = _require_supported(name, raw.get("model_type"))
    _require_cost_fields(name, raw, model_type)
    _check_raw_shape(name, raw)
    from transformers import AutoConfig

    try:
        if config_file.name == "config.json":
            config = AutoConfig.from_pretrained(str(directory))
        else:
            config = AutoConfig.for_model(model_type, **{k: v for k, v in raw.items() if k != "model_type"})
        spec = spec_from_hf_config(name, config.to_dict())
    except Exception as exc:  # transformers' validators raise their own classes, one per version
        first = str(exc).strip().splitlines()[-1].strip() if str(exc).strip() else type(exc).__name__
        raise UserInputError(f"model config '{config_file}' is not a valid {model_type} config: {first}") from None
    return validate_shape(spec)


def _suggestions(query: str) -> str:
    specs = _catalog()
    owner = {spec.name.lower(): spec.name for spec in specs}
    owner.update({alias.lower(): spec.name for spec in specs for alias in spec.aliases})
    close = difflib.get_close_matches(query.lower(), list(owner), n=8, cutoff=0.6)
    if close:
        return "close matches: " + ", ".join(list(dict.fromkeys(owner[c] for c in close))[:3])
    first_of_family = {spec.family: spec.name for spec in reversed(specs) if not spec.name.startswith("tiny-")}
    return "catalog has e.g. " + ", ".join(sorted(first_of_family.values()))
