"""peft adapter bookkeeping on a diffusers transformer: which adapters are active,
which are merged, and adding or removing one without losing either state.

peft unmerges every layer (with a warning) to inject an adapter or change the
active set, and a merged layer ignores any adapter that is not merged. These
helpers let the StoryMem and style loaders keep a fused LoRA fused.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@contextlib.contextmanager
def adding_adapter(transformer: torch.nn.Module, name: str, *, join_fused: bool) -> Iterator[None]:
    """Around code that adds adapter ``name``: afterwards the adapters active before stay
    active beside it, and the ones merged before are merged again (with ``join_fused``,
    the new one too, if anything was merged). If the code raises, the adapter is removed
    and the model is as before.
    """
    previously_active = active_adapters(transformer)  # peft activates only the new adapter
    previously_merged = merged_adapters(transformer)  # peft cannot add to merged layers
    unmerge_all(transformer)
    try:
        with warnings.catch_warnings():
            # StoryMem + style LoRAs side by side is the point
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            yield
    except BaseException:
        remove_adapter(transformer, name)
        merge(transformer, previously_merged)
        raise
    activate(transformer, previously_active | {name})
    merge(transformer, previously_merged | {name} if join_fused and previously_merged else previously_merged)


def active_adapters(transformer: torch.nn.Module) -> set[str]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    active: set[str] = set()
    for module in transformer.modules():
        if isinstance(module, BaseTunerLayer):
            names = module.active_adapter
            active |= {names} if isinstance(names, str) else set(names)
    return active


def merged_adapters(transformer: torch.nn.Module) -> set[str]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    merged: set[str] = set()
    for module in transformer.modules():
        if isinstance(module, BaseTunerLayer):
            merged |= set(module.merged_adapters)
    return merged


def unmerge_all(transformer: torch.nn.Module) -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in transformer.modules():
        if isinstance(module, BaseTunerLayer) and module.merged:
            module.unmerge()


def activate(transformer: torch.nn.Module, names: set[str]) -> None:
    """Make exactly ``names`` active on every LoRA layer (a layer skips the ones it lacks)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    unmerge_all(transformer)  # peft would unmerge anyway, with a warning
    for module in transformer.modules():
        if isinstance(module, BaseTunerLayer):
            module.set_adapter(sorted(names))


def merge(transformer: torch.nn.Module, names: set[str]) -> None:
    """Merge ``names`` into the weights wherever a layer has them (peft unmerges on injection)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    if not names:
        return
    for module in transformer.modules():
        if isinstance(module, BaseTunerLayer):
            module.merge(adapter_names=sorted(names & set(module.scaling)))


def fuse_active_adapters(transformer: torch.nn.Module) -> set[str]:
    """Merge every active adapter that is not merged yet; returns the merged set."""
    merge(transformer, active_adapters(transformer) - merged_adapters(transformer))
    return merged_adapters(transformer)


def remove_adapter(transformer: torch.nn.Module, adapter_name: str) -> None:
    """Delete an adapter (merged or not); the other merged adapters stay merged."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    merged = merged_adapters(transformer)
    activate(transformer, active_adapters(transformer) - {adapter_name})  # unmerges too
    for module in transformer.modules():
        if isinstance(module, BaseTunerLayer) and adapter_name in module.scaling:
            module.delete_adapter(adapter_name)
    merge(transformer, merged - {adapter_name})
    peft_config = getattr(transformer, "peft_config", None)
    if isinstance(peft_config, dict):
        peft_config.pop(adapter_name, None)
