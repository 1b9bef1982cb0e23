"""load_storymem_lora: same numbers as W + alpha/sqrt(r) * B @ A, loud errors, nothing half-loaded."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch
from safetensors.torch import save_file

from storymem_cli.errors import InvalidInputError
from storymem_cli.models.lora import (
    ALPHA_FROM_ARGUMENT,
    ALPHA_FROM_FILE,
    ALPHA_FROM_RANK,
    LoraError,
    load_storymem_lora,
)


def _save(tmp_path, name, tensors, metadata=None):
    path = tmp_path / name
    if path.suffix == ".safetensors":
        save_file(tensors, str(path), metadata=metadata)
    else:
        torch.save(tensors, path)
    return path


@pytest.fixture
def files(tmp_path, experts, make_lora):
    high, low = experts
    lora_high, lora_low = make_lora(high, seed=1), make_lora(low, seed=2)
    return (
        _save(tmp_path, "backbone_high_noise.safetensors", lora_high),
        _save(tmp_path, "backbone_low_noise.safetensors", lora_low),
        lora_high,
        lora_low,
    )


def test_loaded_lora_matches_hand_merged_weights(experts, files, forward, merge_by_hand):
    high, low = experts
    high_file, low_file, lora_high, lora_low = files
    want_high, want_low = merge_by_hand(high, lora_high), merge_by_hand(low, lora_low)
    base_high = forward(high)
    base_weight = high.blocks[0].attn1.to_q.weight.detach().clone()

    load_storymem_lora(high, low, high_file, low_file)

    assert (forward(want_high) - base_high).abs().max() > 1e-2  # the LoRA changes the output a lot
    torch.testing.assert_close(forward(high), forward(want_high), atol=1e-4, rtol=0)
    torch.testing.assert_close(forward(low), forward(want_low), atol=1e-4, rtol=0)
    # unfused: a real LoRA beside untouched base weights
    assert torch.equal(high.blocks[0].attn1.to_q.base_layer.weight, base_weight)
    assert "storymem" in high.blocks[0].attn1.to_q.lora_A


def test_fuse_merges_both_experts_and_can_be_undone(experts, files, forward, merge_by_hand):
    high, low = experts
    high_file, low_file, lora_high, lora_low = files
    base_high, base_low = forward(high), forward(low)
    want_high, want_low = merge_by_hand(high, lora_high), merge_by_hand(low, lora_low)

    report = load_storymem_lora(high, low, high_file, low_file, fuse=True)

    assert report["fused"] is True
    for model, want in ((high, want_high), (low, want_low)):
        torch.testing.assert_close(
            model.blocks[1].ffn.net[2].base_layer.weight, want.blocks[1].ffn.net[2].weight, atol=1e-5, rtol=0
        )
    torch.testing.assert_close(forward(high), forward(want_high), atol=1e-4, rtol=0)
    torch.testing.assert_close(forward(low), forward(want_low), atol=1e-4, rtol=0)
    high.unfuse_lora()
    low.unfuse_lora()
    high.disable_adapters()
    low.disable_adapters()
    torch.testing.assert_close(forward(high), base_high, atol=1e-5, rtol=0)
    torch.testing.assert_close(forward(low), base_low, atol=1e-5, rtol=0)


def test_each_expert_gets_its_own_file(experts, files, forward, merge_by_hand):
    high, low = experts
    high_file, low_file, lora_high, lora_low = files
    # the low expert with the high file would be a different model
    wrong_low, want_low = merge_by_hand(low, lora_high), merge_by_hand(low, lora_low)
    load_storymem_lora(high, low, high_file, low_file)
    assert (forward(low) - forward(wrong_low)).abs().max() > 1e-2
    torch.testing.assert_close(forward(low), forward(want_low), atol=1e-4, rtol=0)


def test_swapped_files_are_refused(experts, files):
    high, low = experts
    high_file, low_file, *_ = files
    with pytest.raises(LoraError, match="backbone_low_noise.*transformer"):
        load_storymem_lora(high, low, low_file, high_file)
    assert not getattr(high, "peft_config", None)


def test_report_names_files_hashes_rank_and_rsLoRA_scale(experts, files):
    high, low = experts
    high_file, low_file, *_ = files
    report = load_storymem_lora(high, low, high_file, low_file)
    assert report["rank"] == 4
    assert report["alpha"] == 4.0 and report["alpha_source"] == ALPHA_FROM_RANK  # no alpha in the files
    assert report["scale"] == pytest.approx(4 / math.sqrt(4))
    assert report["fused"] is False
    for expert, path in (("transformer", high_file), ("transformer_2", low_file)):
        assert report["files"][expert] == str(path.resolve())
        assert report["sha256"][expert] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert report["tensors"][expert] == 2 * 20  # 2 blocks x 20 tensors


def test_release_scale_at_rank_128_is_11_31():
    from storymem_cli.models.lora import STORYMEM_LORA_ALPHA, rslora_scale

    assert rslora_scale(STORYMEM_LORA_ALPHA, 128) == pytest.approx(11.3137, abs=1e-4)


def test_alpha_from_metadata_else_the_rank(tmp_path, experts, make_lora, forward, merge_by_hand):
    high, low = experts
    lora_high, lora_low = make_lora(high, seed=1), make_lora(low, seed=2, rank=8)
    high_file = _save(tmp_path, "backbone_high_noise.safetensors", lora_high, {"lora_alpha": "16.0"})
    low_file = _save(tmp_path, "backbone_low_noise.safetensors", lora_low)
    want_high, want_low = merge_by_hand(high, lora_high, alpha=16.0), merge_by_hand(low, lora_low, alpha=8.0)
    fixed_128 = merge_by_hand(low, lora_low, alpha=128.0)  # the alpha used before whatever the rank: 16x at rank 8
    report = load_storymem_lora(high, low, high_file, low_file)
    assert report["alpha"] == {"transformer": 16.0, "transformer_2": 8.0}
    assert report["alpha_source"] == {"transformer": ALPHA_FROM_FILE, "transformer_2": ALPHA_FROM_RANK}
    assert report["scale"] == {"transformer": pytest.approx(16 / 2), "transformer_2": pytest.approx(8 / math.sqrt(8))}
    torch.testing.assert_close(forward(high), forward(want_high), atol=1e-4, rtol=0)
    torch.testing.assert_close(forward(low), forward(want_low), atol=1e-4, rtol=0)
    assert not torch.allclose(forward(low), forward(fixed_128), atol=1e-4)


def test_an_alpha_argument_wins(tmp_path, experts, make_lora):
    high, low = experts
    files = [_save(tmp_path, f"{stem}.safetensors", make_lora(t), {"lora_alpha": "16.0"})
             for stem, t in (("backbone_high_noise", high), ("backbone_low_noise", low))]  # fmt: skip
    report = load_storymem_lora(high, low, *files, alpha=2.0)
    assert (report["alpha"], report["alpha_source"]) == (2.0, ALPHA_FROM_ARGUMENT)
    assert high.blocks[0].attn1.to_q.scaling["storymem"] == pytest.approx(2.0 / 2)


def test_pth_and_safetensors_load_the_same(tmp_path, experts, make_transformer, make_lora, forward):
    high, low = experts
    lora_high, lora_low = make_lora(high, seed=1), make_lora(low, seed=2)
    st = tmp_path / "st"
    pth = tmp_path / "pth"
    st.mkdir()
    pth.mkdir()
    pair_st = (
        _save(st, "backbone_high_noise.safetensors", lora_high),
        _save(st, "backbone_low_noise.safetensors", lora_low),
    )
    pair_pth = (_save(pth, "backbone_high_noise.pth", lora_high), _save(pth, "backbone_low_noise.pth", lora_low))
    a_high, a_low = make_transformer(seed=0), make_transformer(seed=1)
    b_high, b_low = make_transformer(seed=0), make_transformer(seed=1)
    load_storymem_lora(a_high, a_low, *pair_st)
    load_storymem_lora(b_high, b_low, *pair_pth)
    assert torch.equal(forward(a_high), forward(b_high))
    assert torch.equal(forward(a_low), forward(b_low))


class _NotATensor:
    pass


def test_pth_with_pickled_object_is_refused(tmp_path, experts, make_lora):
    high, low = experts
    tensors = make_lora(high)
    bad = tmp_path / "backbone_high_noise.pth"
    torch.save({**tensors, "extra": _NotATensor()}, bad)
    low_file = _save(tmp_path, "backbone_low_noise.pth", make_lora(low))
    with pytest.raises(LoraError, match="weights_only") as info:
        load_storymem_lora(high, low, bad, low_file)
    assert isinstance(info.value, InvalidInputError)
    assert str(bad) in str(info.value)
    assert not getattr(high, "peft_config", None)


def test_pth_with_non_tensor_entries_is_refused(tmp_path, experts, make_lora):
    high, low = experts
    bad = tmp_path / "backbone_high_noise.pth"
    torch.save({**make_lora(high), "step": 20000}, bad)
    low_file = _save(tmp_path, "backbone_low_noise.pth", make_lora(low))
    with pytest.raises(LoraError, match="not tensors: 'step'"):
        load_storymem_lora(high, low, bad, low_file)


def test_key_variants_normalise(tmp_path, experts, make_transformer, make_lora, forward):
    high, low = experts
    lora_high, lora_low = make_lora(high, seed=1), make_lora(low, seed=2)

    def variant(lora):
        out = {}
        for key, value in lora.items():
            key = key.removeprefix("base_model.model.").replace(".weight", ".default.weight")
            out["module.diffusion_model." + key] = value
        return out

    plain = (
        _save(tmp_path, "backbone_high_noise.safetensors", lora_high),
        _save(tmp_path, "backbone_low_noise.safetensors", lora_low),
    )
    other = tmp_path / "variant"
    other.mkdir()
    renamed = (
        _save(other, "backbone_high_noise.safetensors", variant(lora_high)),
        _save(other, "backbone_low_noise.safetensors", variant(lora_low)),
    )
    load_storymem_lora(high, low, *plain)
    v_high, v_low = make_transformer(seed=0), make_transformer(seed=1)
    load_storymem_lora(v_high, v_low, *renamed)
    assert torch.equal(forward(high), forward(v_high))
    assert torch.equal(forward(low), forward(v_low))


def _broken(lora, how):
    lora = dict(lora)
    if how == "unknown":
        lora["base_model.model.blocks.0.self_attn.norm_q.lora_A.weight"] = torch.zeros(4, 32)
        return lora, "norm_q"
    if how == "missing":
        del lora["base_model.model.blocks.1.ffn.2.lora_B.weight"]
        return lora, r"block 1 lacks 'base_model.model.blocks.1.ffn.2.lora_B.weight'"
    if how == "shape":
        lora["base_model.model.blocks.0.cross_attn.k.lora_A.weight"] = torch.zeros(4, 33)
        return lora, r"blocks.0.cross_attn.k.lora_A.weight has shape \[4, 33\].*needs \[4, 32\]"
    if how == "rank":
        key = "base_model.model.blocks.1.self_attn.v.lora_B.weight"
        lora[key] = torch.zeros(32, 8)
        return lora, "rank 8 but other tensors have rank 4"
    if how == "bigger_model":
        for suffix in ("lora_A", "lora_B"):
            src = f"base_model.model.blocks.0.ffn.0.{suffix}.weight"
            lora[src.replace("blocks.0", "blocks.2")] = lora[src].clone()
        return lora, r"block\(s\) \[2\] but the transformer has 2 blocks"
    if how == "duplicate":
        lora["base_model.model.blocks.0.ffn.0.lora_A.default.weight"] = lora[
            "base_model.model.blocks.0.ffn.0.lora_A.weight"
        ].clone()
        return lora, "same tensor after normalisation"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["unknown", "missing", "shape", "rank", "bigger_model", "duplicate"])
def test_bad_file_raises_named_error_and_loads_nothing(tmp_path, experts, make_lora, forward, how):
    high, low = experts
    base_high, base_low = forward(high), forward(low)
    good_high = _save(tmp_path, "backbone_high_noise.safetensors", make_lora(high, seed=1))
    bad, pattern = _broken(make_lora(low, seed=2), how)
    bad_low = _save(tmp_path, "backbone_low_noise.safetensors", bad)
    with pytest.raises(LoraError, match=pattern) as info:
        load_storymem_lora(high, low, good_high, bad_low)
    assert str(bad_low) in str(info.value)
    # nothing half-loaded: the high expert, checked first and fine, was not touched either
    for model, base in ((high, base_high), (low, base_low)):
        assert not getattr(model, "peft_config", None)
        assert torch.equal(forward(model), base)


def test_smaller_model_lora_is_a_missing_block_error(tmp_path, make_transformer, make_lora):
    high, low = make_transformer(seed=0, num_layers=3), make_transformer(seed=1, num_layers=3)
    two_block = make_transformer(seed=0)
    f_high = _save(tmp_path, "backbone_high_noise.safetensors", make_lora(two_block))
    f_low = _save(tmp_path, "backbone_low_noise.safetensors", make_lora(two_block))
    with pytest.raises(LoraError, match="missing in 1 block"):
        load_storymem_lora(high, low, f_high, f_low)


def test_loading_twice_is_refused(experts, files):
    high, low = experts
    high_file, low_file, *_ = files
    load_storymem_lora(high, low, high_file, low_file)
    with pytest.raises(LoraError, match="already has a LoRA adapter"):
        load_storymem_lora(high, low, high_file, low_file)


def test_lora_takes_the_dtype_of_a_bf16_expert(tmp_path, make_transformer, make_lora, forward, merge_by_hand):
    """The release's files are fp32; on bf16 experts the adapter must be bf16 too (no dtype clash)."""
    high, low = make_transformer(seed=0), make_transformer(seed=1)
    lora_high, lora_low = make_lora(high, seed=1), make_lora(low, seed=2)
    want = merge_by_hand(high, lora_high)
    high, low = high.to(torch.bfloat16), low.to(torch.bfloat16)
    f_high = _save(tmp_path, "backbone_high_noise.safetensors", lora_high)
    f_low = _save(tmp_path, "backbone_low_noise.safetensors", lora_low)
    load_storymem_lora(high, low, f_high, f_low)
    for model in (high, low):
        layer = model.blocks[1].attn2.to_v
        assert layer.lora_A["storymem"].weight.dtype == torch.bfloat16
        assert layer.lora_B["storymem"].weight.dtype == torch.bfloat16
    gen = torch.Generator().manual_seed(5)
    hidden = torch.randn(1, 8, 2, 4, 4, generator=gen)
    text = torch.randn(1, 5, 16, generator=gen)
    with torch.no_grad():
        got = high(hidden.bfloat16(), torch.tensor([500]), text.bfloat16(), return_dict=False)[0].float()
        ref = want(hidden, torch.tensor([500]), text, return_dict=False)[0]
    assert (got - ref).abs().max() < 0.1 * ref.abs().max()  # bf16 rounding only


def test_failure_on_the_second_expert_unloads_the_first(experts, files, forward, monkeypatch):
    from storymem_cli.models import lora as lora_module

    high, low = experts
    high_file, low_file, *_ = files
    base_high = forward(high)
    real = lora_module.inject_storymem_lora
    calls = []

    def flaky(transformer, *args, **kwargs):
        calls.append(transformer)
        if len(calls) == 2:
            raise RuntimeError("out of memory")
        real(transformer, *args, **kwargs)

    monkeypatch.setattr(lora_module, "inject_storymem_lora", flaky)
    with pytest.raises(RuntimeError, match="out of memory"):
        load_storymem_lora(high, low, high_file, low_file)
    assert calls == [high, low]
    assert "storymem" not in high.peft_config
    assert torch.equal(forward(high), base_high)
