"""A tiny random HPSv3 for tests and the oracle check, made here: no download.

``write_tiny_hpsv3(folder)`` writes what the real scorer reads, in the real layouts:

- the base model's small files (HPSV3_BASE_FILES): a Qwen2-VL ``config.json`` in the flat layout of
  Qwen/Qwen2-VL-7B-Instruct (readable by transformers 4.45 and 5) at toy widths; a byte-level BPE
  tokenizer trained here on HPSv3's own instruction text, with Qwen2-VL's special tokens at the
  ids after its vocabulary; the Qwen2-VL image processor config (14-px patches merged 2x2) and
  chat template;
- ``HPSv3.safetensors``: random weights under the names transformers 4.45 gave the authors'
  ``Qwen2VLRewardModelBT`` (``visual.*``, ``model.*``, ``lm_head.weight``, ``rm_head.*``), with the
  embedding resized to the tokenizer plus ``<|Reward|>``, as the package's training did.
"""

from __future__ import annotations

import json
from pathlib import Path

from storymem_cli.scoring.hpsv3_files import HPSV3_CHECKPOINT
from storymem_cli.scoring.hpsv3_inputs import INSTRUCTION, instruction

# Qwen2-VL's added tokens, in their order (ids follow the BPE vocabulary, as 151643.. follow Qwen2's).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Qwen2's pre-tokenizer split (the regex of its tokenizer.json).
PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Qwen2-VL-7B-Instruct's chat template (its chat_template.json).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
BPE_VOCAB = 600  # merges learnt on the instruction text: its words become few tokens
TEXT = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2}  # fmt: skip
VISION = {"depth": 2, "embed_dim": 32, "mlp_ratio": 2, "num_heads": 2}
MROPE_SECTION = [2, 3, 3]  # sums to head_dim / 2 = 64 / 4 / 2
RM_HIDDEN = (1024, 16)  # the package's default ranknet head: hidden -> 1024 -> 16 -> 2


def write_tiny_hpsv3(folder: Path, *, seed: int = 0, weight_std: float = 0.2) -> Path:
    """Write the tiny base files and checkpoint into ``folder``; returns the checkpoint path."""
    folder.mkdir(parents=True, exist_ok=True)
    vocab_size = _write_tokenizer(folder)
    ids = {tok: vocab_size + i for i, tok in enumerate(SPECIAL_TOKENS)}
    n_tokens = vocab_size + len(SPECIAL_TOKENS)
    config = {
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "model_type": "qwen2_vl",
        "attention_dropout": 0.0,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "hidden_act": "silu",
        **TEXT,
        "initializer_range": 0.02,
        "max_position_embeddings": 32768,
        "max_window_layers": TEXT["num_hidden_layers"],
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "use_cache": True,
        "use_sliding_window": False,
        "vision_config": {**VISION, "in_chans": 3, "hidden_size": TEXT["hidden_size"], "patch_size": 14,
                          "spatial_merge_size": 2, "spatial_patch_size": 14, "temporal_patch_size": 2},  # fmt: skip
        "rope_scaling": {"type": "mrope", "mrope_section": MROPE_SECTION},
        "vocab_size": n_tokens + 64,  # larger than the tokenizer, as 152064 > 151658 in the real one
    }
    _dump(folder / "config.json", config)
    _dump(folder / "tokenizer_config.json", _tokenizer_config(ids))
    _dump(folder / "chat_template.json", {"chat_template": CHAT_TEMPLATE})
    _dump(
        folder / "preprocessor_config.json",
        {
            "min_pixels": 3136,
            "max_pixels": 12845056,
            "patch_size": 14,
            "temporal_patch_size": 2,
            "merge_size": 2,
            "image_mean": CLIP_MEAN,
            "image_std": CLIP_STD,
            "image_processor_type": "Qwen2VLImageProcessor",
            "processor_class": "Qwen2VLProcessor",
        },
    )
    checkpoint = folder / HPSV3_CHECKPOINT
    _write_checkpoint(checkpoint, config, rows=n_tokens + 1, seed=seed, std=weight_std)  # + <|Reward|>
    return checkpoint


def _write_tokenizer(folder: Path) -> int:
    """Train a byte-level BPE the way Qwen2's tokenizer.json is set up; returns its vocabulary size."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    corpus = [INSTRUCTION, instruction("a boat leaves the harbour at dawn"), "You are a helpful assistant.", "system"]
    tok.train_from_iterator(corpus, trainer=trainer)
    vocab_size = tok.get_vocab_size()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.save(str(folder / "tokenizer.json"))
    return vocab_size


def _tokenizer_config(ids: dict[str, int]) -> dict:
    """Qwen2-VL-7B-Instruct's tokenizer_config.json, with this vocabulary's ids."""
    added = {
        str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                 "special": True}  # fmt: skip
        for t, i in ids.items()
    }
    return {
        "add_prefix_space": False,
        "added_tokens_decoder": added,
        "additional_special_tokens": list(SPECIAL_TOKENS[1:]),
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 32768,
        "pad_token": "<|endoftext|>",
        "padding_side": "left",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def _write_checkpoint(path: Path, config: dict, *, rows: int, seed: int, std: float) -> None:
    import torch
    from safetensors.torch import save_file

    from storymem_cli.scoring.hpsv3_model import HPSv3RewardModel, old_key, qwen2vl_config

    cfg = qwen2vl_config(config, vocab_rows=rows)
    names_shapes = {name: p.shape for name, p in HPSv3RewardModel(cfg).state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in sorted(names_shapes.items()):
        value = torch.randn(shape, generator=g) * std
        if name.endswith("norm.weight") or ".norm" in name or "ln_q" in name:
            value = 1.0 + value  # norms near 1, as trained ones are
        tensors[old_key(name)] = value.contiguous()
    tensors["lm_head.weight"] = (torch.randn(rows, TEXT["hidden_size"], generator=g) * std).contiguous()
    save_file(tensors, str(path), metadata={"format": "pt"})


def _dump(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


