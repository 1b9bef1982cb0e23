"""The HPSv3 reward model on transformers 5's Qwen2-VL: the authors' checkpoint, our module.

HPSv3 (``hpsv3`` 1.0.0, ``model/qwen2vl_trainer.py``) is Qwen2-VL with a small MLP (``rm_head``:
hidden -> 1024 -> 16 -> 2, in float32) read at the ``<|Reward|>`` token; its two outputs are the
reward's mean mu (the score) and its uncertainty sigma. Its forward runs the vision tower, puts
the image features in place of the image tokens and runs the language model with *plain* positions
0..L-1 (it calls the text model directly, so the multimodal 3-D rope positions are never made);
transformers 5's ``Qwen2VLTextModel`` makes the same positions when given none.

The checkpoint was saved by transformers 4.45, whose Qwen2-VL had ``visual.*`` and ``model.*`` at
the top; transformers 5 moved them to ``model.visual.*`` and ``model.language_model.*`` (its own
checkpoint mapping for Qwen2VLForConditionalGeneration says the same: the test compares them).
``lm_head.weight`` is in the file but a reward model never uses it, so it is not built (1 GB less).
Any other key, a missing key or a wrong shape is an error naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from storymem_cli.errors import InvalidInputError

# (transformers 4.45 prefix, this module's prefix); the first that matches wins.
KEY_PREFIXES = (("visual.", "model.visual."), ("model.", "model.language_model."), ("rm_head.", "rm_head."))
UNUSED_KEYS = frozenset({"lm_head.weight"})  # in the file, not needed for the reward
RM_HEAD = (1024, 16)  # config/HPSv3_7B.yaml: rm_head_type ranknet without kwargs
OUTPUTS = 2  # output_dim: mu, sigma


def new_key(old: str) -> str | None:
    """This module's name for a checkpoint key, or None when the key is not one we know."""
    for before, after in KEY_PREFIXES:
        if old.startswith(before):
            return after + old[len(before) :]
    return None


def old_key(new: str) -> str:
    """The checkpoint name of one of this module's keys (for writing checkpoints in the authors' layout)."""
    for before, after in KEY_PREFIXES:
        if new.startswith(after):
            return before + new[len(after) :]
    raise KeyError(new)


def qwen2vl_config(config: dict[str, Any], *, vocab_rows: int) -> Any:
    """transformers 5's Qwen2VLConfig from the base model's config.json dict, with the checkpoint's vocabulary rows."""
    from transformers import Qwen2VLConfig

    cfg = Qwen2VLConfig(**config)
    cfg.text_config.vocab_size = vocab_rows
    cfg.vocab_size = vocab_rows
    # The package ran sdpa when flash-attn was absent (train.py); sdpa on both sides keeps them comparable.
    cfg._attn_implementation = "sdpa"
    cfg.text_config._attn_implementation = "sdpa"
    cfg.vision_config._attn_implementation = "sdpa"
    return cfg


class HPSv3RewardModel(nn.Module):
    """Qwen2-VL (vision tower + language model, no LM head) and the reward head."""

    def __init__(self, config: Any):
        from transformers import Qwen2VLModel

        super().__init__()
        self.image_token_id = int(config.image_token_id)
        self.model = Qwen2VLModel(config)
        hidden = config.text_config.hidden_size
        self.rm_head = nn.Sequential(
            nn.Linear(hidden, RM_HEAD[0]),
            nn.ReLU(),
            nn.Dropout(0.05),
            nn.Linear(RM_HEAD[0], RM_HEAD[1]),
            nn.ReLU(),
            nn.Linear(RM_HEAD[1], OUTPUTS),
        )

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor,
        image_grid_thw: torch.Tensor,
        reward_token_id: int,
    ) -> torch.Tensor:
        """(B, 2) float32: mu and sigma of each sequence's reward."""
        text = self.model.language_model
        visual = self.model.visual
        embeds = text.embed_tokens(input_ids)
        image = visual(pixel_values.to(visual.get_dtype()), grid_thw=image_grid_thw).pooler_output
        mask = (input_ids == self.image_token_id).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(mask, image.to(embeds.device, embeds.dtype))
        hidden = text(inputs_embeds=embeds, attention_mask=attention_mask, use_cache=False).last_hidden_state
        at = input_ids == reward_token_id
        if not bool((at.sum(dim=1) == 1).all()):
            raise ValueError(f"every sequence needs exactly one reward token (id {reward_token_id})")
        # The package ran the head under float32 autocast: the head and its input in float32.
        return self.rm_head(hidden[at].float())


def load_reward_model(checkpoint: Path, config: dict[str, Any], *, dtype: torch.dtype | None = None) -> HPSv3RewardModel:
    """The reward model with the checkpoint's weights, on the CPU; backbone in ``dtype`` (None: as stored).

    Built on the meta device and filled from the file, so no random init and no copy of the
    weights is made. The head stays in float32, as the package keeps it.
    """
    from accelerate import init_empty_weights
    from safetensors import safe_open

    with safe_open(str(checkpoint), framework="pt") as f:
        names = list(f.keys())
        renamed = {}
        unknown = []
        for name in names:
            target = new_key(name)
            if target is None:
                if name not in UNUSED_KEYS:
                    unknown.append(name)
                continue
            renamed[target] = name
        if unknown:
            raise InvalidInputError(
                f"{checkpoint} is not an HPSv3 checkpoint: {len(unknown)} unknown keys, e.g. {', '.join(unknown[:3])}",
                hint="pass HPSv3.safetensors from MizzenAI/HPSv3 (keys visual.*, model.*, lm_head.weight, rm_head.*)",
            )
        embed = renamed.get("model.language_model.embed_tokens.weight")
        if embed is None:
            raise InvalidInputError(
                f"{checkpoint} has no model.embed_tokens.weight", hint="pass HPSv3.safetensors from MizzenAI/HPSv3"
            )
        rows = int(f.get_slice(embed).get_shape()[0])
        cfg = qwen2vl_config(config, vocab_rows=rows)
        with init_empty_weights():
            model = HPSv3RewardModel(cfg)
        expected = model.state_dict()
        missing = sorted(set(expected) - set(renamed))
        if missing:
            raise InvalidInputError(
                f"{checkpoint} lacks {len(missing)} HPSv3 weights, e.g. {', '.join(old_key(k) for k in missing[:3])}",
                hint="the file may be truncated or from another model: download HPSv3.safetensors again",
            )
        state = {}
        for target, name in renamed.items():
            tensor = f.get_tensor(name)
            want = expected[target]
            if tuple(tensor.shape) != tuple(want.shape):
                raise InvalidInputError(
                    f"{checkpoint}: {name} has shape {tuple(tensor.shape)}, the base model's config.json makes "
                    f"{tuple(want.shape)}",
                    hint="the base model's small files must be Qwen/Qwen2-VL-7B-Instruct's",
                )
            if target.startswith("rm_head."):
                tensor = tensor.float()
            elif dtype is not None:
                tensor = tensor.to(dtype)
            state[target] = tensor
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval().requires_grad_(False)
