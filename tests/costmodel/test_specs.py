"""Specs: lookup by name, sources for every figure, parameter counts that match the architecture."""

from __future__ import annotations

import dataclasses

import pytest

from inferlab.costmodel.specs import (
    GpuSpec,
    ModelSpec,
    dtype_bytes,
    get_gpu,
    get_model,
    list_gpus,
    list_models,
    published_latencies,
)

FIGURE_TYPES = (int, float)


@pytest.mark.parametrize("name, expected", [
    ("h100", "H100-80GB-SXM"), ("H100", "H100-80GB-SXM"), ("a100", "A100-80GB-SXM"),
    ("H200", "H200-141GB-SXM"), ("h100_80gb_sxm", "H100-80GB-SXM"),
])
def test_get_gpu_is_case_insensitive_and_knows_aliases(name: str, expected: str) -> None:
    assert get_gpu(name).name == expected


@pytest.mark.parametrize("name, expected", [
    ("llama-2-7b", "Llama-2-7B"), ("LLAMA-2-70B", "Llama-2-70B"), ("llama-3-405b", "Llama-3.1-405B"),
    ("Llama-3.1-405B", "Llama-3.1-405B"), ("mixtral-8x7b", "Mixtral-8x7B"),
])
def test_get_model_is_case_insensitive_and_knows_aliases(name: str, expected: str) -> None:
    assert get_model(name).name == expected


def test_unknown_names_raise_listing_valid_names() -> None:
    with pytest.raises(ValueError, match="H100-80GB-SXM"):
        get_gpu("v100")
    with pytest.raises(ValueError, match="Llama-2-70B"):
        get_model("gpt-5")


def test_required_gpus_and_models_exist() -> None:
    assert {"A100-80GB-SXM", "H100-80GB-SXM", "H200-141GB-SXM"} <= set(list_gpus())
    assert {"Llama-2-7B", "Llama-2-70B", "Llama-3.1-405B", "Mixtral-8x7B"} <= set(list_models())


@pytest.mark.parametrize("spec", [get_gpu(n) for n in list_gpus()] + [get_model(n) for n in list_models()],
                         ids=lambda s: s.name)
def test_every_figure_has_a_source(spec: GpuSpec | ModelSpec) -> None:
    for field in dataclasses.fields(spec):
        if field.name in ("name", "aliases", "sources", "is_tied_embeddings"):
            continue
        assert len(spec.source(field.name)) > 10, field.name


@pytest.mark.parametrize("name", list_models())
def test_param_counts_match_architecture(name: str) -> None:
    model = get_model(name)
    assert model.estimate_num_params() == pytest.approx(model.num_params, rel=0.005)
    assert model.estimate_num_active_params() == pytest.approx(model.num_active_params, rel=0.005)


def test_mixtral_is_moe_with_fewer_active_params() -> None:
    model = get_model("mixtral-8x7b")
    assert model.is_moe and (model.num_experts, model.num_experts_per_token) == (8, 2)
    assert model.num_active_params < 0.3 * model.num_params
    assert not get_model("llama-2-70b").is_moe


def test_h100_datasheet_figures() -> None:
    gpu = get_gpu("h100")
    assert gpu.memory_bytes == 80e9 and gpu.hbm_bandwidth_bytes_per_s == 3.35e12
    assert gpu.num_gpus_per_node == 8 and gpu.peak_flops("bf16") == pytest.approx(989.5e12)
    assert get_gpu("h200").memory_bytes == 141e9


def test_specs_are_frozen_and_validated() -> None:
    gpu = get_gpu("a100")
    with pytest.raises(dataclasses.FrozenInstanceError):
        gpu.memory_bytes = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="hbm_bandwidth"):
        dataclasses.replace(gpu, hbm_bandwidth_bytes_per_s=-1.0)
    model = get_model("llama-2-7b")
    with pytest.raises(ValueError, match="num_kv_heads"):
        dataclasses.replace(model, num_kv_heads=5)
    with pytest.raises(ValueError, match="num_experts_per_token"):
        dataclasses.replace(model, num_experts_per_token=2)


def test_dtypes() -> None:
    assert dtype_bytes("bf16") == 2 and dtype_bytes("fp8") == 1
    with pytest.raises(ValueError, match="dtype"):
        dtype_bytes("int3")
    with pytest.raises(ValueError, match="fp8"):
        get_gpu("a100").peak_flops("fp8")
    assert get_gpu("h100").peak_flops("fp8") == 2 * get_gpu("h100").peak_flops("bf16")


def test_published_latencies_have_sources() -> None:
    (calibration,) = published_latencies("calibration")
    assert (calibration.gpu, calibration.model) == ("A100-80GB-SXM", "Llama-2-7B")
    assert calibration.request_latency_s == pytest.approx(0.2340)
    validation = {p.gpu: p for p in published_latencies("validation")}
    assert validation["H100-80GB-SXM"].request_latency_s == pytest.approx(0.1538)
    assert all("NVIDIA" in p.source for p in published_latencies())
