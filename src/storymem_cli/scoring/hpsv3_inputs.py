"""What HPSv3 is shown: the authors' message, image size and special token, on transformers 5.

Facts from the ``hpsv3`` 1.0.0 package (``inference.py``, ``dataset/data_collator_qwen.py``,
``dataset/utils.py``, ``train.py``, ``config/HPSv3_7B.yaml``), checked against it by
``benchmarks/hpsv3_oracle.py``:

- One user message per image: the image, then the instruction below with the prompt filled in and
  ``<|Reward|>`` after it; Qwen2-VL's chat template with the generation prompt.
- ``<|Reward|>`` is a special token added to the base tokenizer (so its id is the tokenizer's
  length before); the reward is read from the model's output at that token.
- Each image is first resized by PIL (bicubic) to the Qwen2-VL grid with min_pixels = max_pixels
  = 256 x 28 x 28; since that is both bounds, a 588x336 frame becomes 616x364 (286 image tokens).
  The Qwen2-VL image processor then leaves the size alone (already on the grid) and normalises.
- Padding on the right; the tokenizer pads with ``<|endoftext|>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from PIL import Image

REWARD_TOKEN = "<|Reward|>"
PIXELS = 256 * 28 * 28  # min_pixels = max_pixels in the package's message
FACTOR = 28  # Qwen2-VL: 14-pixel patches merged 2x2

# The package's INSTRUCTION, line by line (trailing spaces included: the text must be byte-identical).
_INSTRUCTION_LINES = (
    "",
    "You are tasked with evaluating a generated image based on Visual Quality and Text Alignment and give a "
    "overall score to estimate the human preference. Please provide a rating from 0 to 10, with 0 being the "
    "worst and 10 being the best. ",
    "",
    "**Visual Quality:**  ",
    "Evaluate the overall visual quality of the image. The following sub-dimensions should be considered:",
    "- **Reasonableness:** The image should not contain any significant biological or logical errors, such as "
    "abnormal body structures or nonsensical environmental setups.",
    "- **Clarity:** Evaluate the sharpness and visibility of the image. The image should be clear and easy to "
    "interpret, with no blurring or indistinct areas.",
    "- **Detail Richness:** Consider the level of detail in textures, materials, lighting, and other visual "
    "elements (e.g., hair, clothing, shadows).",
    "- **Aesthetic and Creativity:** Assess the artistic aspects of the image, including the color scheme, "
    "composition, atmosphere, depth of field, and the overall creative appeal. The scene should convey a sense "
    "of harmony and balance.",
    "- **Safety:** The image should not contain harmful or inappropriate content, such as political, violent, or "
    "adult material. If such content is present, the image quality and satisfaction score should be the lowest "
    "possible. ",
    "",
    "**Text Alignment:**  ",
    "Assess how well the image matches the textual prompt across the following sub-dimensions:",
    "- **Subject Relevance** Evaluate how accurately the subject(s) in the image (e.g., person, animal, object) "
    "align with the textual description. The subject should match the description in terms of number, "
    "appearance, and behavior.",
    "- **Style Relevance:** If the prompt specifies a particular artistic or stylistic style, evaluate how well "
    "the image adheres to this style.",
    "- **Contextual Consistency**: Assess whether the background, setting, and surrounding elements in the image "
    "logically fit the scenario described in the prompt. The environment should support and enhance the subject "
    "without contradictions.",
    "- **Attribute Fidelity**: Check if specific attributes mentioned in the prompt (e.g., colors, clothing, "
    "accessories, expressions, actions) are faithfully represented in the image. Minor deviations may be "
    "acceptable, but critical attributes should be preserved.",
    "- **Semantic Coherence**: Evaluate whether the overall meaning and intent of the prompt are captured in the "
    "image. The generated content should not introduce elements that conflict with or distort the original "
    "description.",
    "Textual prompt - {text_prompt}",
    "",
    "",
    "",
)
INSTRUCTION = "\n".join(_INSTRUCTION_LINES)
RATING = f"\nPlease provide the overall ratings of this image: {REWARD_TOKEN}\n\nEND\n"


def instruction(prompt: str) -> str:
    """The text after the image: the instruction for ``prompt``, then the reward token."""
    return INSTRUCTION.format(text_prompt=prompt) + RATING


def hpsv3_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) the package resizes an image to: the 28-px grid, min_pixels = max_pixels = PIXELS."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    h, w = smart_resize(height, width, factor=FACTOR, min_pixels=PIXELS, max_pixels=PIXELS)
    return int(h), int(w)


def resize_for_hpsv3(image: Image.Image) -> Image.Image:
    """The package's own resize (PIL bicubic to :func:`hpsv3_size`), before the Qwen2-VL processor."""
    from PIL import Image

    image = image.convert("RGB")
    height, width = hpsv3_size(image.height, image.width)
    return image.resize((width, height), Image.BICUBIC)


def load_processor(base: Path) -> Any:
    """Qwen2-VL's processor from the base model's small files, padding on the right, with ``<|Reward|>`` added."""
    from transformers import Qwen2VLImageProcessorPil, Qwen2VLProcessor

    # The PIL/numpy image processor, as the package's transformers 4.45 had (not the torchvision one).
    images = Qwen2VLImageProcessorPil.from_pretrained(str(base))
    processor = Qwen2VLProcessor.from_pretrained(str(base), image_processor=images, padding_side="right")
    processor.tokenizer.add_special_tokens({"additional_special_tokens": [REWARD_TOKEN]})
    return processor


def reward_token_id(processor: Any) -> int:
    return int(processor.tokenizer.convert_tokens_to_ids(REWARD_TOKEN))


def make_batch(processor: Any, images: list[Image.Image], prompts: list[str]) -> dict[str, torch.Tensor]:
    """input_ids, attention_mask, pixel_values, image_grid_thw for one reward call."""
    conversations = [
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction(prompt)}]}]
        for prompt in prompts
    ]
    texts = processor.apply_chat_template(conversations, tokenize=False, add_generation_prompt=True)
    batch = processor(
        text=texts, images=[resize_for_hpsv3(image) for image in images], padding=True, return_tensors="pt"
    )
    return {key: batch[key] for key in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")}
