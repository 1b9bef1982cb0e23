"""Key names of the published StoryMem LoRA, and their diffusers module names (SPEC 5).

The release trains a peft LoRA on the *original* Wan2.2 module tree and saves it
as ``base_model.model.blocks.{i}.{module}.lora_{A,B}.weight``. diffusers names
the same linear layers differently; this module is the one place that knows the
correspondence, in both directions. Pure string functions: no torch here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Factor = Literal["A", "B"]

# Original Wan module -> diffusers WanTransformer3DModel module, inside block i (SPEC 5 table;
# the same renames as diffusers' scripts/convert_wan_to_diffusers.py).
WAN_TO_DIFFUSERS: dict[str, str] = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}
DIFFUSERS_TO_WAN: dict[str, str] = {v: k for k, v in WAN_TO_DIFFUSERS.items()}

FACTORS: tuple[Factor, Factor] = ("A", "B")
TENSORS_PER_BLOCK = len(WAN_TO_DIFFUSERS) * len(FACTORS)  # 10 linear layers x (lora_A, lora_B) = 20

# Wrappers that training code puts in front of the module path: peft's PeftModel
# (base_model.model.), DDP/FSDP (module.), ComfyUI-style exports (diffusion_model.).
_PREFIXES = ("base_model.model.", "module.", "diffusion_model.")
_PUBLISHED_PREFIX = "base_model.model."

_MODULE_PATTERN = "|".join(re.escape(m) for m in WAN_TO_DIFFUSERS)
_KEY_RE = re.compile(rf"^blocks\.(\d+)\.({_MODULE_PATTERN})\.lora_([AB])(?:\.default)?\.weight$")

# peft target_modules as one regex (peft full-matches a string target): exactly the
# ten linear layers of every block, nothing in the embedders or the output head.
DIFFUSERS_TARGET_REGEX = r"blocks\.\d+\.(" + "|".join(re.escape(m) for m in DIFFUSERS_TO_WAN) + ")"


@dataclass(frozen=True)
class LoraKey:
    """One tensor of the LoRA: which block, which original Wan module, which factor."""

    block: int
    module: str  # original Wan name, e.g. "self_attn.q"
    factor: Factor

    @property
    def diffusers_module(self) -> str:
        return f"blocks.{self.block}.{WAN_TO_DIFFUSERS[self.module]}"

    @property
    def peft_key(self) -> str:
        """The key ``peft.set_peft_model_state_dict`` expects on a diffusers transformer."""
        return f"{self.diffusers_module}.lora_{self.factor}.weight"

    @property
    def published_key(self) -> str:
        """The key as the authors' release writes it."""
        return f"{_PUBLISHED_PREFIX}blocks.{self.block}.{self.module}.lora_{self.factor}.weight"


def strip_prefixes(key: str) -> str:
    """Remove any wrapper prefixes, in any order (``module.base_model.model.`` included)."""
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                changed = True
    return key


def parse_key(key: str) -> LoraKey | None:
    """The :class:`LoraKey` of a published (or prefixed / ``.default``) key; None if it is not one."""
    match = _KEY_RE.match(strip_prefixes(key))
    if match is None:
        return None
    block, module, factor = match.groups()
    return LoraKey(int(block), module, factor)  # type: ignore[arg-type]


def parse_peft_key(key: str, adapter_name: str) -> LoraKey | None:
    """The :class:`LoraKey` of a parameter name of a peft-injected diffusers transformer."""
    suffix_re = rf"\.lora_([AB])\.{re.escape(adapter_name)}\.weight$"
    match = re.search(suffix_re, key)
    if match is None:
        return None
    module_path = key[: match.start()]
    head, _, rest = module_path.partition(".")
    block_str, _, diffusers_module = rest.partition(".")
    if head != "blocks" or not block_str.isdigit() or diffusers_module not in DIFFUSERS_TO_WAN:
        return None
    return LoraKey(int(block_str), DIFFUSERS_TO_WAN[diffusers_module], match.group(1))  # type: ignore[arg-type]


def expected_keys(num_blocks: int) -> list[LoraKey]:
    """Every tensor a complete LoRA for a transformer with ``num_blocks`` blocks holds."""
    return [LoraKey(b, m, f) for b in range(num_blocks) for m in WAN_TO_DIFFUSERS for f in FACTORS]
