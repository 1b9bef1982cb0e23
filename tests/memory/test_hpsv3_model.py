"""HPSv3 on our stack, on a tiny random checkpoint in the authors' layout (scoring/hpsv3_tiny.py).

The full comparison with the ``hpsv3`` package runs in its own venv (benchmarks/hpsv3_oracle.py,
result in benchmarks/results/hpsv3_oracle.json); here the package's scores of three frames are pinned.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from storymem_cli.errors import InvalidInputError, MissingWeightsError
from storymem_cli.memory import quality
from storymem_cli.memory.quality import load_scorer
from storymem_cli.scoring.hpsv3_files import HPSV3_BASE_FILES, HPSV3_CHECKPOINT, HPSv3Files, download_commands
from storymem_cli.scoring.hpsv3_inputs import hpsv3_size, instruction
from storymem_cli.scoring.hpsv3_model import new_key, old_key
from storymem_cli.scoring.hpsv3_tiny import write_tiny_hpsv3

# The hpsv3 1.0.0 package's mu for FRAMES on the tiny checkpoint (seed 0), through its own
# HPSv3RewardInferencer under transformers 4.45.2 in float32 (benchmarks/hpsv3_oracle_package.py),
# given the release's shrunk copies as storymem's scorer makes them.
PACKAGE_MU = (-0.7503353357315063, -0.25533512234687805, 0.8602664470672607)
TOLERANCE = 1e-4  # float32 on both sides; see benchmarks/hpsv3_oracle.py
# sha256 of the package's text after the image for the prompt "" (INSTRUCTION + prompt_with_special_token).
PACKAGE_TEXT_SHA256 = "368655b668b400c5064dda9023169d682c5c5c4be165b1692ede9e222fcb70ac"


def frames() -> np.ndarray:
    y, x = np.mgrid[0:48, 0:80]
    a = np.stack([x * 3, y * 5, (x + y) * 2], -1)
    b = np.stack([255 - y * 5, x * 3, np.full_like(x, 128)], -1)
    c = ((x // 8 + y // 8) % 2 * 255)[..., None].repeat(3, -1)
    return np.stack([a, b, c]).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hpsv3")
    write_tiny_hpsv3(folder)
    return folder


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(quality, "_CACHE", {})


def copy_with(tiny, tmp_path, edit):
    """A copy of the tiny folder whose checkpoint's tensors went through ``edit(dict)``."""
    folder = tmp_path / "edited"
    shutil.copytree(tiny, folder)
    tensors = load_file(str(tiny / HPSV3_CHECKPOINT))
    edit(tensors)
    save_file(tensors, str(folder / HPSV3_CHECKPOINT))
    return folder


def test_the_text_after_the_image_is_the_packages_byte_for_byte():
    text = instruction("")
    assert hashlib.sha256(text.encode()).hexdigest() == PACKAGE_TEXT_SHA256
    assert text.endswith("Please provide the overall ratings of this image: <|Reward|>\n\nEND\n")


def test_images_are_resized_as_the_package_resizes_them():
    # min_pixels = max_pixels = 256*28*28: below it an image is scaled up (the release's 588x336 copy
    # becomes 616x364, 22x13 tokens); above it, floored onto the grid under the cap.
    assert hpsv3_size(336, 588) == (364, 616)
    assert hpsv3_size(480, 832) == (336, 588)


def test_old_layout_checkpoint_scores_frames_as_the_package(tiny, fresh):
    scorer = load_scorer("hpsv3", weights=tiny / HPSV3_CHECKPOINT, device="cpu")
    scores = scorer.score(frames())
    np.testing.assert_allclose(scores, PACKAGE_MU, atol=TOLERANCE, rtol=0)
    np.testing.assert_array_equal(scorer.score(frames()), scores)  # deterministic
    one = load_scorer("hpsv3", weights=tiny / HPSV3_CHECKPOINT, device="cpu").score(frames()[:1])
    np.testing.assert_allclose(one, scores[:1], atol=TOLERANCE, rtol=0)  # alone or in a batch


def test_our_key_mapping_is_transformers_own(tiny):
    # transformers 5 ships the rename of Qwen2-VL's transformers-4 checkpoints; ours must agree with it.
    import re

    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    renames = get_checkpoint_conversion_mapping("Qwen2VLForConditionalGeneration")
    keys = [k for k in load_file(str(tiny / HPSV3_CHECKPOINT)) if not k.startswith(("rm_head.", "lm_head."))]
    assert any(k.startswith("visual.") for k in keys) and any(k.startswith("model.layers.") for k in keys)
    for key in keys:
        theirs = key
        for rename in renames:
            for source, target in zip(rename.source_patterns, rename.target_patterns, strict=True):
                theirs = re.sub(source, target, theirs)
        assert new_key(key) == theirs
        assert old_key(theirs) == key


def test_unknown_key_is_refused_by_name(tiny, tmp_path, fresh):
    folder = copy_with(tiny, tmp_path, lambda t: t.update({"value_head.weight": t["rm_head.5.weight"].clone()}))
    with pytest.raises(InvalidInputError, match=r"not an HPSv3 checkpoint: 1 unknown keys, e\.g\. value_head\.weight"):
        load_scorer("hpsv3", weights=folder, device="cpu")


def test_missing_key_is_refused_by_name(tiny, tmp_path, fresh):
    folder = copy_with(tiny, tmp_path, lambda t: t.pop("visual.merger.ln_q.weight"))
    with pytest.raises(InvalidInputError, match=r"lacks 1 HPSv3 weights, e\.g\. visual\.merger\.ln_q\.weight"):
        load_scorer("hpsv3", weights=folder, device="cpu")


def test_wrong_shape_is_refused_by_name(tiny, tmp_path, fresh):
    folder = copy_with(tiny, tmp_path, lambda t: t.update({"rm_head.5.weight": t["rm_head.5.weight"][:1].clone()}))
    with pytest.raises(InvalidInputError, match=r"rm_head\.5\.weight has shape \(1, 16\)"):
        load_scorer("hpsv3", weights=folder, device="cpu")


def test_a_base_file_the_loader_needs_is_named_with_its_download(tiny, tmp_path, fresh):
    folder = tmp_path / "no-tokenizer"
    shutil.copytree(tiny, folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(MissingWeightsError) as info:
        load_scorer("hpsv3", weights=folder, device="cpu")
    message = str(info.value)
    assert "missing in" in message and "tokenizer.json" in message
    assert download_commands(checkpoint=False, local_dir=folder)[0] in message


def test_a_broken_base_file_shows_the_real_error(tiny, tmp_path, fresh):
    folder = tmp_path / "bad-config"
    shutil.copytree(tiny, folder)
    (folder / "preprocessor_config.json").write_text("{ not json", encoding="utf-8")
    with pytest.raises(MissingWeightsError) as info:
        load_scorer("hpsv3", weights=folder, device="cpu")
    message = str(info.value)
    assert "could not load HPSv3" in message and "preprocessor_config.json" in message
    assert "not installed" not in message and download_commands()[0] in message


def test_the_base_files_list_is_exactly_what_the_loader_opens(tiny):
    # download and doctor fetch/check HPSV3_BASE_FILES: it must be what loading and scoring read.
    # (The checkpoint is opened by safetensors' own code, which Python's audit events do not see.)
    from PIL import Image

    from storymem_cli.scoring.hpsv3 import HPSv3Reward

    _OPENED.clear()
    _OPENED.append(str(tiny))  # the folder to watch
    try:
        reward = HPSv3Reward.load(HPSv3Files(tiny / HPSV3_CHECKPOINT, tiny))
        reward.reward([Image.fromarray(frames()[0])], [""])
    finally:
        watched, *opened = _OPENED
        _OPENED.clear()
    names = {Path(p).relative_to(watched).as_posix() for p in opened if p.startswith(watched + "/")}
    assert names == set(HPSV3_BASE_FILES)


_OPENED: list[str] = []  # [folder, opened paths...] while a test watches


def _audit(event: str, args: tuple) -> None:
    if _OPENED and event == "open" and isinstance(args[0], (str, Path)):
        _OPENED.append(str(args[0]))


sys.addaudithook(_audit)  # cannot be removed: it records only while _OPENED names a folder
