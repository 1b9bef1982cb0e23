"""ViCLIP-L/14 (InternVid), written from its published description, laid out like its checkpoint.

ViCLIP is a CLIP whose image tower attends jointly over 8 frames. We need it only to
embed videos and texts for the ST-Bench metrics, so this module holds the forward
pass and nothing for training (no masking, no drop-path, no loss).

Key names and shapes verified (search tool, facts only) against the public
ViCLIP sources in InternVideo and VBench's third_party/ViCLIP (viclip.py,
viclip_vision.py, viclip_text.py):
  - top level: ``temp`` (scalar), ``vision_encoder.*``, ``text_encoder.*``;
  - vision: ``conv1.weight`` (Conv3d, no bias), ``class_embedding``,
    ``positional_embedding`` (grid**2 + 1, width), ``temporal_positional_embedding``
    (1, frames, width), ``ln_pre``, ``transformer.resblocks.N.{ln_1, attn.in_proj_weight,
    attn.in_proj_bias, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}``, ``ln_post``,
    ``proj`` (width, embed_dim);
  - text: ``token_embedding``, ``positional_embedding`` (context, width), the same
    resblocks, ``ln_final``, ``text_projection`` (width, embed_dim); the causal mask is
    not in the state dict.
  - forward facts: spatial positions are added to every frame's tokens (cls included),
    temporal positions to patch tokens only; one cls token leads the 8 x grid**2 patch
    tokens; the video embedding is ln_post(cls) @ proj; the text embedding is
    ln_final at the EOT position (the largest token id) @ text_projection.
The real-size instance has 447 keys and 427.6M parameters (tests/eval/test_viclip.py
builds it on the meta device and checks both).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn


class ViCLIPConfig(BaseModel):
    """Dimensions of a ViCLIP. Defaults: the published ViCLIP-L/14 (SPEC 9)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(224, ge=1)  # frames are resized and centre-cropped to 224
    patch_size: int = Field(14, ge=1)  # ViT-L/14: 16 x 16 = 256 patches per frame
    num_frames: int = Field(8, ge=1)  # 8 frames, one from the middle of each eighth of the clip
    vision_width: int = Field(1024, ge=1)
    vision_layers: int = Field(24, ge=1)
    vision_heads: int = Field(16, ge=1)
    embed_dim: int = Field(768, ge=1)  # joint video-text space
    text_width: int = Field(768, ge=1)  # CLIP-L text transformer
    text_layers: int = Field(12, ge=1)
    text_heads: int = Field(12, ge=1)
    context_length: int = Field(32, ge=2)  # ViCLIP was trained with 32 text tokens, not CLIP's 77
    vocab_size: int = Field(49408, ge=1)  # CLIP BPE vocabulary

    @classmethod
    def tiny(cls) -> ViCLIPConfig:
        """A few-hundred-kB random-weight ViCLIP for tests and `--models tiny` (same code path).

        The vocabulary stays full size so the real tokenizer feeds it."""
        return cls(
            image_size=28, vision_width=32, vision_layers=2, vision_heads=2,
            embed_dim=16, text_width=32, text_layers=2, text_heads=2,
        )

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


class QuickGELU(nn.Module):
    """CLIP's activation: x * sigmoid(1.702 x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block with CLIP's parameter names (packed in_proj attention)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict([("c_fc", nn.Linear(width, 4 * width)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(4 * width, width))])
        )

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask)
        return x


class ViCLIPVision(nn.Module):
    """ViT with joint space-time attention over all frames' patches."""

    def __init__(self, cfg: ViCLIPConfig):
        super().__init__()
        w, p = cfg.vision_width, cfg.patch_size
        self.num_frames = cfg.num_frames
        self.conv1 = nn.Conv3d(3, w, kernel_size=(1, p, p), stride=(1, p, p), bias=False)
        self.class_embedding = nn.Parameter(torch.randn(w) * w**-0.5)
        self.positional_embedding = nn.Parameter(torch.randn(cfg.grid**2 + 1, w) * w**-0.5)
        self.temporal_positional_embedding = nn.Parameter(torch.randn(1, cfg.num_frames, w) * 0.02)
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = Transformer(w, cfg.vision_layers, cfg.vision_heads)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(torch.randn(w, cfg.embed_dim) * w**-0.5)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video: (B, T, 3, H, W) normalised frames -> (B, embed_dim), not normalised."""
        b, t = video.shape[:2]
        if t != self.num_frames:
            raise ValueError(f"ViCLIP takes {self.num_frames} frames per video, got {t}")
        x = self.conv1(video.transpose(1, 2))  # (B, W, T, g, g)
        x = x.flatten(3).permute(0, 2, 3, 1)  # (B, T, g*g, W)
        x = x + self.positional_embedding[1:]  # spatial position of each patch
        x = x + self.temporal_positional_embedding[0, :, None, :]  # frame position, patches only
        x = x.transpose(1, 2).reshape(b, -1, x.shape[-1])  # patch-major order, as the release
        cls = (self.class_embedding + self.positional_embedding[0]).expand(b, 1, -1)
        x = self.ln_pre(torch.cat([cls, x], dim=1))
        x = self.transformer(x)
        return self.ln_post(x[:, 0]) @ self.proj


class ViCLIPText(nn.Module):
    """CLIP text transformer: causal, EOT-token pooling."""

    def __init__(self, cfg: ViCLIPConfig):
        super().__init__()
        w = cfg.text_width
        self.token_embedding = nn.Embedding(cfg.vocab_size, w)
        self.positional_embedding = nn.Parameter(torch.randn(cfg.context_length, w) * 0.01)
        self.transformer = Transformer(w, cfg.text_layers, cfg.text_heads)
        self.ln_final = nn.LayerNorm(w)
        self.text_projection = nn.Parameter(torch.randn(w, cfg.embed_dim) * w**-0.5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (B, context_length) int64, EOT = largest id in each row -> (B, embed_dim)."""
        x = self.token_embedding(tokens) + self.positional_embedding
        n = tokens.shape[1]
        causal = torch.full((n, n), float("-inf"), dtype=x.dtype, device=x.device).triu_(1)
        x = self.ln_final(self.transformer(x, causal))
        eot = tokens.argmax(dim=-1)
        return x[torch.arange(x.shape[0], device=x.device), eot] @ self.text_projection


class ViCLIP(nn.Module):
    """The two towers and the contrastive temperature, under the checkpoint's names."""

    def __init__(self, cfg: ViCLIPConfig | None = None):
        super().__init__()
        self.config = cfg or ViCLIPConfig()
        self.vision_encoder = ViCLIPVision(self.config)
        self.text_encoder = ViCLIPText(self.config)
        self.temp = nn.Parameter(torch.tensor(0.01))  # unused at inference; kept for strict loading

    @torch.no_grad()
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) -> (B, D) L2-normalised, float32."""
        return nn.functional.normalize(self.vision_encoder(video).float(), dim=-1)

    @torch.no_grad()
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, context_length) token ids -> (B, D) L2-normalised, float32."""
        return nn.functional.normalize(self.text_encoder(tokens).float(), dim=-1)
