"""Where the HPSv3 reward model's files come from (torch-free: download, doctor and the scorer share it).

HPSv3 is Qwen2-VL-7B-Instruct with a reward head, trained and saved whole into one safetensors file.
The scorer needs that file plus only the *small* files of the base model (its config, tokenizer and
image processor); the base model's own 16 GB of weights are never read.
"""

from __future__ import annotations

HPSV3_REPO = "MizzenAI/HPSv3"  # the authors' checkpoint repo
HPSV3_CHECKPOINT = "HPSv3.safetensors"  # the whole reward model (base weights + head)
HPSV3_BASE_REPO = "Qwen/Qwen2-VL-7B-Instruct"  # hpsv3's config/HPSv3_7B.yaml: model_name_or_path
# The base model's files the scorer reads: architecture, tokenizer, image processor, chat template.
HPSV3_BASE_FILES: tuple[str, ...] = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "preprocessor_config.json",
    "chat_template.json",
)
