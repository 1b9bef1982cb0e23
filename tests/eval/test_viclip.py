"""ViCLIP: the published state-dict layout, strict loading, tokenizer, forward facts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from storymem_cli.errors import InvalidInputError
from storymem_cli.eval.tokenizer import tokenize
from storymem_cli.eval.viclip import ViCLIP, ViCLIPConfig
from storymem_cli.eval.viclip_loader import load_viclip, save_viclip

# Shapes of the release checkpoint (SPEC 9), by name.
PUBLISHED = {
    "temp": (),
    "vision_encoder.conv1.weight": (1024, 3, 1, 14, 14),
    "vision_encoder.class_embedding": (1024,),
    "vision_encoder.positional_embedding": (257, 1024),
    "vision_encoder.temporal_positional_embedding": (1, 8, 1024),
    "vision_encoder.ln_pre.weight": (1024,),
    "vision_encoder.transformer.resblocks.23.attn.in_proj_weight": (3072, 1024),
    "vision_encoder.transformer.resblocks.23.attn.in_proj_bias": (3072,),
    "vision_encoder.transformer.resblocks.23.attn.out_proj.weight": (1024, 1024),
    "vision_encoder.transformer.resblocks.23.mlp.c_fc.weight": (4096, 1024),
    "vision_encoder.transformer.resblocks.23.mlp.c_proj.weight": (1024, 4096),
    "vision_encoder.transformer.resblocks.23.ln_2.bias": (1024,),
    "vision_encoder.ln_post.bias": (1024,),
    "vision_encoder.proj": (1024, 768),
    "text_encoder.token_embedding.weight": (49408, 768),
    "text_encoder.positional_embedding": (32, 768),
    "text_encoder.transformer.resblocks.11.attn.in_proj_weight": (2304, 768),
    "text_encoder.transformer.resblocks.11.mlp.c_fc.weight": (3072, 768),
    "text_encoder.ln_final.weight": (768,),
    "text_encoder.text_projection": (768, 768),
}


def test_real_size_layout_matches_the_release():
    with torch.device("meta"):
        model = ViCLIP()
    state = model.state_dict()
    assert len(state) == 447
    for name, shape in PUBLISHED.items():
        assert tuple(state[name].shape) == shape, name
    assert "vision_encoder.conv1.bias" not in state  # Conv3d patchify has no bias
    assert "vision_encoder.transformer.resblocks.24.ln_1.weight" not in state
    assert "text_encoder.transformer.resblocks.12.ln_1.weight" not in state
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 427.6


@pytest.fixture
def tiny() -> ViCLIP:
    torch.manual_seed(0)
    return ViCLIP(ViCLIPConfig.tiny()).eval()


def _outputs(model: ViCLIP) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    video = torch.randn(2, 8, 3, 28, 28, generator=g)
    tokens = tokenize(["a fox in the snow", "a lighthouse keeper climbs the stairs"], 32)
    return model.encode_video(video), model.encode_text(tokens)


@pytest.mark.parametrize("name", ["tiny.pth", "tiny.safetensors"])
def test_tiny_checkpoint_loads_strictly_through_the_real_loader(tiny, tmp_path: Path, name):
    path = tmp_path / name
    save_viclip(tiny, path)
    if name.endswith(".pth"):
        assert set(torch.load(path, weights_only=True)) == {"model"}  # the release layout
    loaded = load_viclip(path, ViCLIPConfig.tiny())
    for a, b in zip(_outputs(tiny), _outputs(loaded)):
        assert torch.allclose(a, b, atol=1e-6)


def test_missing_key_is_refused_and_named(tiny, tmp_path: Path):
    state = tiny.state_dict()
    del state["vision_encoder.temporal_positional_embedding"]
    torch.save({"model": state}, tmp_path / "m.pth")
    with pytest.raises(InvalidInputError, match=r"missing key\(s\): vision_encoder\.temporal_positional_embedding"):
        load_viclip(tmp_path / "m.pth", ViCLIPConfig.tiny())


def test_extra_key_is_refused_and_named(tiny, tmp_path: Path):
    state = dict(tiny.state_dict())
    state["vision_encoder.conv1.bias"] = torch.zeros(32)
    torch.save({"model": state}, tmp_path / "x.pth")
    with pytest.raises(InvalidInputError, match=r"unexpected key\(s\): vision_encoder\.conv1\.bias"):
        load_viclip(tmp_path / "x.pth", ViCLIPConfig.tiny())


def test_wrong_shape_and_wrong_container_are_refused(tiny, tmp_path: Path):
    save_viclip(tiny, tmp_path / "t.pth")
    with pytest.raises(InvalidInputError, match=r"wrong shape.*text_encoder\.positional_embedding"):
        load_viclip(tmp_path / "t.pth", ViCLIPConfig.tiny().model_copy(update={"context_length": 16}))
    torch.save(tiny.state_dict(), tmp_path / "flat.pth")  # not under 'model'
    with pytest.raises(InvalidInputError, match="under 'model'"):
        load_viclip(tmp_path / "flat.pth", ViCLIPConfig.tiny())


def test_tokenizer_context_32_truncates_with_eot_last():
    short, long = tokenize(["a fox", "snow " * 60], 32)
    assert short.shape == (32,) and short[0].item() == 49406  # start of text
    assert short[:4].tolist()[-1] == 49407 and short[4:].eq(0).all()  # EOT then padding
    assert long[-1].item() == 49407 and long.eq(49407).sum() == 1


def test_text_embedding_is_read_at_the_eot_token(tiny):
    # Tokens after EOT are causal-masked away from EOT, so changing them changes nothing.
    a = tokenize(["a fox in the snow"], 32)
    b = a.clone()
    b[0, 7:] = 320  # overwrite the padding after EOT (position 6) with a real token id
    assert int(a[0].argmax()) < 7
    assert torch.allclose(tiny.encode_text(a), tiny.encode_text(b), atol=1e-6)


def test_frame_order_matters_through_the_temporal_embedding(tiny):
    g = torch.Generator().manual_seed(2)
    video = torch.randn(1, 8, 3, 28, 28, generator=g)
    assert not torch.allclose(tiny.encode_video(video), tiny.encode_video(video.flip(1)), atol=1e-4)
    with torch.no_grad():
        tiny.vision_encoder.temporal_positional_embedding.zero_()
    # with no temporal positions, joint attention over a set of tokens ignores frame order
    assert torch.allclose(tiny.encode_video(video), tiny.encode_video(video.flip(1)), atol=1e-5)


def test_wrong_frame_count_is_rejected(tiny):
    with pytest.raises(ValueError, match="8 frames"):
        tiny.encode_video(torch.zeros(1, 4, 3, 28, 28))



def test_forward_matches_open_clip_for_a_one_frame_config():
    """Cross-check with an independent implementation. With one frame, ViCLIP's vision
    tower is a CLIP image ViT whose patch tokens (not the cls token) also get the
    temporal embedding; so, under the same weights, with that embedding folded into
    open_clip's patch positions, the embeddings must agree. The text towers are the CLIP
    text transformer outright."""
    from open_clip.model import CLIP

    cfg = ViCLIPConfig.tiny().model_copy(update={"num_frames": 1})
    torch.manual_seed(0)
    ours = ViCLIP(cfg).eval()
    with torch.no_grad():  # large enough that adding it to the cls token too would show
        ours.vision_encoder.temporal_positional_embedding.normal_(0, 0.5)
    clip = CLIP(
        embed_dim=cfg.embed_dim,
        quick_gelu=True,
        vision_cfg={"image_size": cfg.image_size, "layers": cfg.vision_layers, "width": cfg.vision_width,
                    "head_width": cfg.vision_width // cfg.vision_heads, "patch_size": cfg.patch_size},
        text_cfg={"context_length": cfg.context_length, "vocab_size": cfg.vocab_size, "width": cfg.text_width,
                  "heads": cfg.text_heads, "layers": cfg.text_layers},
    ).eval()
    state = ours.state_dict()
    temporal = state["vision_encoder.temporal_positional_embedding"][0, 0]
    mapped = {"logit_scale": clip.logit_scale.detach()}
    for k, v in state.items():
        name = k.split(".", 1)[1] if "." in k else k
        if k.startswith("vision_encoder.") and "temporal" not in k:
            if name == "conv1.weight":
                v = v[:, :, 0]
            elif name == "positional_embedding":
                v = torch.cat([v[:1], v[1:] + temporal])  # temporal position on patches only
            mapped["visual." + name] = v
        elif k.startswith("text_encoder."):
            mapped[name] = v
    clip.load_state_dict(mapped, strict=True)

    frame = torch.randn(2, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(3))
    tokens = tokenize(["a fox in the snow", "the keeper lights the lantern " * 9], cfg.context_length)
    with torch.no_grad():
        reference_image = torch.nn.functional.normalize(clip.encode_image(frame), dim=-1)
        reference_text = torch.nn.functional.normalize(clip.encode_text(tokens), dim=-1)
    assert torch.allclose(ours.encode_video(frame[:, None]), reference_image, atol=1e-5)
    assert torch.allclose(ours.encode_text(tokens), reference_text, atol=1e-5)
