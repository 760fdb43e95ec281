import functools
import json
import warnings

import pytest
import torch
from transformers import AutoModelForCausalLM

from dstune.catalog import LinearLayer, ModelSpec, list_models, load_model
from dstune.errors import UnknownModelError, UserInputError

CATALOG_NAMES = [spec.name for spec in list_models()]


def _build(spec: ModelSpec) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(spec.hf_config_object())


@functools.cache
def _built(name: str) -> torch.nn.Module:
    return _build(load_model(name))


def _real_linears(model: torch.nn.Module) -> tuple[LinearLayer, ...]:
    return tuple(
        LinearLayer(name=name, in_features=module.in_features, out_features=module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    )


@pytest.mark.parametrize("name", CATALOG_NAMES)
def test_num_params_matches_transformers(name):
    spec = load_model(name)
    model = _built(name)
    assert spec.num_params == sum(p.numel() for p in model.parameters())
    assert spec.num_params == spec.num_layers * spec.params_per_layer + spec.embedding_params


@pytest.mark.parametrize(
    "name, expected",
    [
        ("opt-1.3b", 1_315_758_080),
        ("opt-6.7b", 6_658_473_984),
        ("llama-2-7b", 6_738_415_616),
        ("llama-3-8b", 8_030_261_248),
    ],
)
def test_published_counts(name, expected):
    assert load_model(name).num_params == expected


def test_opt_175b_has_metaseqs_shape():
    """DeepSpeed-Chat's Table 1 trains OPT-175B on 64 x A100-80G; metaseq's config: 96 x 12288, 96 heads."""
    spec = load_model("opt-175b")
    assert (spec.num_layers, spec.hidden_size, spec.num_heads, spec.ffn_size) == (96, 12288, 96, 49152)
    assert spec.num_params == pytest.approx(175e9, rel=0.005)


@pytest.mark.parametrize("name", ["tiny-opt", "tiny-llama", "opt-350m", "qwen2.5-0.5b", "mistral-7b"])
def test_linear_layers_match_named_modules(name):
    assert load_model(name).linear_layers() == _real_linears(_built(name))


def test_opt_350m_projects_embeddings():
    spec = load_model("opt-350m")
    names = {layer.name: layer for layer in spec.linear_layers()}
    assert names["model.decoder.project_in"] == LinearLayer(
        name="model.decoder.project_in", in_features=512, out_features=1024
    )
    assert names["lm_head"].in_features == 512
    assert not spec.final_layer_norm


def test_shape_fields():
    llama70 = load_model("llama-2-70b")
    assert (llama70.num_kv_heads, llama70.ffn_size, llama70.head_dim) == (8, 28672, 128)
    assert llama70.gated_mlp and not llama70.linear_bias and not llama70.tied_embeddings
    qwen = load_model("qwen2.5-0.5b")
    assert qwen.qkv_bias and qwen.tied_embeddings and qwen.family == "qwen2"
    assert not load_model("qwen2.5-7b").tied_embeddings
    opt = load_model("opt-6.7b")
    assert opt.linear_bias and not opt.gated_mlp and opt.word_embed_proj_dim == opt.hidden_size == 4096


def test_hf_config_is_read_only():
    with pytest.raises(TypeError):
        load_model("tiny-opt").hf_config["hidden_size"] = 1  # type: ignore[index]


@pytest.mark.parametrize(
    "query, name",
    [
        ("facebook/opt-1.3b", "opt-1.3b"),
        ("FACEBOOK/OPT-6.7B", "opt-6.7b"),
        ("meta-llama/llama-2-7b-hf", "llama-2-7b"),
        ("meta-llama/Meta-Llama-3-8B", "llama-3-8b"),
        ("Qwen/Qwen2.5-7B", "qwen2.5-7b"),
        ("mistralai/Mistral-7B-v0.1", "mistral-7b"),
        ("OPT-125M", "opt-125m"),
    ],
)
def test_aliases_resolve_case_insensitively(query, name):
    assert load_model(query).name == name


def test_list_models_sorted_by_family_then_size():
    specs = list_models()
    keys = [(spec.family, spec.num_params) for spec in specs]
    assert keys == sorted(keys)
    assert {spec.family for spec in specs} == {"opt", "llama", "qwen2", "mistral"}


def _write_config(folder, **changes):
    config = dict(load_model("tiny-llama").hf_config, **changes)
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_local_directory_and_file(tmp_path):
    folder = _write_config(tmp_path / "my-llama")
    spec = load_model(str(folder))
    assert spec.name == "my-llama"
    assert spec.num_params == load_model("tiny-llama").num_params
    assert load_model(str(folder / "config.json")).num_params == spec.num_params


def test_local_variation_counts_like_transformers(tmp_path):
    spec = load_model(str(_write_config(tmp_path / "three-layers", num_hidden_layers=3)))
    assert spec.num_layers == 3
    model = _build(spec)
    assert spec.num_params == sum(p.numel() for p in model.parameters())
    assert spec.linear_layers() == _real_linears(model)


def test_local_unsupported_model_type(tmp_path):
    folder = tmp_path / "gpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(UserInputError, match="supported types: opt, llama, qwen2, mistral"):
        load_model(str(folder))


def test_directory_without_config(tmp_path):
    with pytest.raises(UnknownModelError, match="no config.json"):
        load_model(str(tmp_path))


@pytest.mark.parametrize(
    "query, expected",
    [("opt-6b", "opt-6.7b"), ("llama2-7b", "llama-2-7b"), ("Meta-Llama-3-8b", "llama-3-8b")],
)
def test_unknown_model_names_close_matches(query, expected):
    with pytest.raises(UnknownModelError) as info:
        load_model(query)
    message = str(info.value)
    assert message.startswith(f"unknown model '{query}'; close matches: ")
    assert expected in message and "\n" not in message
    assert message.endswith("(see 'dstune models')")


def test_unknown_model_without_close_match_lists_catalog():
    with pytest.raises(UnknownModelError, match="catalog has e.g. .*opt-125m"):
        load_model("gpt2")


def test_local_json_file_with_other_name(tmp_path):
    path = tmp_path / "variant.json"
    path.write_text(json.dumps(dict(load_model("tiny-opt").hf_config, num_hidden_layers=3)))
    spec = load_model(str(path))
    assert spec.name == tmp_path.name and spec.num_layers == 3
    assert spec.num_params == sum(p.numel() for p in _build(spec).parameters())


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"hidden_size": -4096}, "non-positive hidden_size=-4096"),
        ({"num_hidden_layers": 0}, "non-positive num_hidden_layers=0"),
        ({"num_attention_heads": 3}, "num_attention_heads=3 does not divide hidden_size"),
        ({"num_key_value_heads": 3}, "num_key_value_heads=3 does not divide num_attention_heads"),
        ({"vocab_size": "many"}, "vocab_size must be whole numbers"),
    ],
)
def test_local_config_with_impossible_shape_is_refused(tmp_path, changes, message):
    folder = _write_config(tmp_path / "broken", head_dim=None, **changes)
    with pytest.raises(UserInputError, match=message):
        load_model(str(folder))


def test_catalog_shapes_pass_validation():
    from dstune.catalog._model_lookup import validate_shape

    assert [validate_shape(spec) for spec in list_models()] == list_models()


def test_malformed_config_json_is_one_user_error(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "opt",')
    with pytest.raises(UserInputError, match="cannot read model config .*line 1"):
        load_model(str(tmp_path))


def test_config_missing_cost_fields_is_refused_not_defaulted(tmp_path):
    path = tmp_path / "three.json"
    path.write_text(json.dumps({"model_type": "opt", "hidden_size": 64, "hiden_layers": 2}))
    with pytest.raises(UserInputError, match="lacks num_hidden_layers, num_attention_heads, ffn_dim, vocab_size"):
        load_model(str(path))


def test_missing_config_path_is_not_called_an_unknown_model(tmp_path):
    with pytest.raises(UnknownModelError, match="no such config file or directory"):
        load_model(str(tmp_path / "gone" / "config.json"))


def test_hugging_face_id_resolves_from_the_local_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    snapshot = tmp_path / "models--acme--tiny-chat" / "snapshots" / "abc123"
    snapshot.parent.mkdir(parents=True)
    _write_config(snapshot, num_hidden_layers=3)
    spec = load_model("acme/tiny-chat")
    assert spec.name == "acme/tiny-chat" and spec.num_layers == 3
    with pytest.raises(UnknownModelError, match="'acme/other' is neither a catalog alias nor in the local"):
        load_model("acme/other")
