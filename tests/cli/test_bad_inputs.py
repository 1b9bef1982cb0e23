"""Every bad input gets one clear message and a stable exit code, never a traceback (issue 22).

Each row runs one command in-process (Typer's CliRunner) and checks the exit code (2: bad
input, 1: a failure of the machine), that the message names the culprit (the file, option or
field), and that no Python traceback reached the user. Nothing heavy loads: renders use
--dry-run or fail before the model, and every input is refused before any work starts.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from storymem_cli.cli.app import app

GOOD_STORY = {
    "story_name": "Boat",
    "scenes": [{"scene_num": 1, "video_prompts": ["a boat on a lake", "the boat sails on"], "cut": [True, False]}],
}


def _png_claiming(path: Path, width: int, height: int) -> None:
    """A small PNG whose header claims ``width`` x ``height`` (what a decompression bomb looks like
    before decoding): size limits must be enforced from the header, before any pixel is decoded."""
    Image.new("RGB", (64, 64)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes of header fields
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """Every file the table refers to, as {name: path}."""
    root = tmp_path_factory.mktemp("bad")
    p = {"root": root}

    def script(name: str, story) -> Path:
        path = root / name
        path.write_text(story if isinstance(story, str) else json.dumps(story), encoding="utf-8")
        return path

    p["good"] = script("good.json", GOOD_STORY)
    p["empty"] = script("empty.json", "")
    p["syntax"] = script("syntax.json", '{"story_name": "x", "scenes": [')
    p["noscenes"] = script("noscenes.json", {"story_name": "x", "scenes": []})
    p["bigseed"] = script("bigseed.json", {**GOOD_STORY, "scenes": [{**GOOD_STORY["scenes"][0], "seeds": [2**32, None]}]})
    p["utf16"] = root / "utf16.json"
    p["utf16"].write_bytes(json.dumps(GOOD_STORY).encode("utf-16"))
    p["binary"] = root / "binary.json"
    p["binary"].write_bytes(b"\x00\x01\x02" * 100)
    p["fifo"] = root / "pipe.json"
    os.mkfifo(p["fifo"])
    p["img"] = root / "hero.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(p["img"])
    p["small_img"] = root / "icon.png"
    Image.new("RGB", (8, 8)).save(p["small_img"])
    p["huge_img"] = root / "huge.png"
    _png_claiming(p["huge_img"], 13000, 13000)
    p["notimage"] = root / "notes.png"
    p["notimage"].write_text("not an image")
    p["truncated_img"] = root / "cut.png"
    p["truncated_img"].write_bytes(p["img"].read_bytes()[:100])

    def with_reference(name: str, image: str) -> Path:
        return script(name, {**GOOD_STORY, "references": [{"name": "Hero", "image": image}]})

    p["ref_missing"] = with_reference("ref_missing.json", "nowhere.png")
    p["ref_notimage"] = with_reference("ref_notimage.json", "notes.png")
    p["ref_huge"] = with_reference("ref_huge.json", "huge.png")
    p["ref_small"] = with_reference("ref_small.json", "icon.png")
    p["ref_system"] = with_reference("ref_system.json", "/etc/hostname")
    p["ref_dir"] = with_reference("ref_dir.json", "/")
    p["a_file"] = script("a_file.txt", "x")
    p["a_dir"] = root / "a_dir"
    p["a_dir"].mkdir()
    p["long"] = root / ("x" * 300)
    p["newline"] = root / "two\nlines"
    p["nowhere"] = root / "nowhere"
    p["under_file"] = p["a_file"] / "run"
    (root / "one").mkdir()
    (root / "two").mkdir()
    p["same1"] = script("one/same.json", GOOD_STORY)
    p["same2"] = script("two/same.json", GOOD_STORY)
    # A run folder with a reference (no render needed for inspect-memory and add-reference).
    p["run"] = root / "run"
    assert CliRunner().invoke(app, ["add-reference", str(p["run"]), str(p["img"])]).exit_code == 0
    p["badmem"] = root / "badmem"
    p["badmem"].mkdir()
    (p["badmem"] / "memory.json").write_text("{not json")
    p["pickle_model"] = root / "pickle_model"
    p["pickle_model"].mkdir()
    (p["pickle_model"] / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    (p["pickle_model"] / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")
    p["dataset_noindex"] = root / "dataset"
    p["dataset_noindex"].mkdir()

    def with_characters(name: str, characters) -> Path:
        return script(name, {**GOOD_STORY, "characters": characters})

    p["ch_pronoun"] = with_characters("ch_pronoun.json", [{"name": "Ann", "aliases": ["she"]}])
    p["ch_twice"] = with_characters("ch_twice.json", [{"name": "Ann", "aliases": ["the girl"]},
                                                      {"name": "Bea", "aliases": ["The Girl"]}])  # fmt: skip
    p["ch_overlap"] = with_characters("ch_overlap.json", [{"name": "Ann", "aliases": ["red coat"]},
                                                          {"name": "Bea", "aliases": ["coat"]}])  # fmt: skip
    p["ch_unknown"] = with_characters("ch_unknown.json", [{"name": "Ann", "nickname": "A"}])
    p["ch_noname"] = with_characters("ch_noname.json", [{"aliases": ["the girl"]}])
    p["ch_notlist"] = with_characters("ch_notlist.json", {"name": "Ann"})
    p["ch_aliases"] = with_characters("ch_aliases.json", [{"name": "Ann", "aliases": "the girl"}])
    p["ch_ref_missing"] = with_characters("ch_ref_missing.json", [{"name": "Ann", "references": ["nowhere.png"]}])
    p["ch_ref_huge"] = with_characters("ch_ref_huge.json", [{"name": "Ann", "references": ["huge.png"]}])
    p["ch_ref_empty"] = with_characters("ch_ref_empty.json", [{"name": "Ann", "references": [""]}])
    p["ch_description"] = with_characters("ch_description.json", [{"name": "Ann", "description": ""}])
    # --memory-from: earlier runs that cannot start a series (a real finished run is in tests/render/test_series.py).
    from storymem_cli.models.identity import weights_identity
    from storymem_cli.models.presets import TINY

    def earlier_run(name: str, **record) -> Path:
        folder = root / name
        assert CliRunner().invoke(app, ["add-reference", str(folder), str(p["img"])]).exit_code == 0
        record = {"format": "storymem-run", "format_version": 2, "story_name": "Boat", "status": "done",
                  "settings": {"model": "tiny"}, "weights_identity": weights_identity(TINY), "shots": [], **record}
        (folder / "run.json").write_text(json.dumps(record))  # fmt: skip
        return folder

    p["src_unfinished"] = earlier_run("src_unfinished", status="rendering")
    p["src_other_model"] = earlier_run("src_other_model", settings={"model": "wan2.2-a14b"})
    p["src_damaged"] = earlier_run("src_damaged")
    for png in (p["src_damaged"] / "memory").glob("*.png"):
        png.unlink()
    return p


def R(*args: str) -> list[str]:
    """A dry-run render of the good script with ``args``."""
    return ["render", "{good}", "--model", "tiny", "--dry-run", *args]


# (command line with {placeholders}, exit code, text the message must contain)
CASES = [
    # validate
    (["validate", "{nowhere}"], 2, "nowhere"),
    (["validate", "{a_dir}"], 2, "a_dir"),
    (["validate", "{empty}"], 2, "empty.json"),
    (["validate", "{syntax}"], 2, "syntax error"),
    (["validate", "{noscenes}"], 2, "scenes"),
    (["validate", "{bigseed}"], 2, "seeds"),
    (["validate", "{utf16}"], 2, "UTF-16"),
    (["validate", "{binary}"], 2, "binary.json"),
    (["validate", "/dev/zero"], 2, "/dev/zero"),
    (["validate", "{fifo}"], 2, "pipe.json"),
    (["validate", "{ref_missing}"], 2, "references[0].image"),
    (["validate", "{ref_notimage}"], 2, "references[0].image"),
    (["validate", "{ref_huge}"], 2, "13000x13000"),
    (["validate", "{ref_system}"], 2, "references[0].image"),
    (["validate", "{ref_dir}"], 2, "references[0].image"),
    (["validate"], 2, "no script"),
    # render: the script and the output folder
    (["render", "{nowhere}", "--dry-run"], 2, "nowhere"),
    (["render", "{syntax}", "--model", "tiny", "--dry-run"], 2, "syntax error"),
    (["render", "{ref_huge}", "--model", "tiny", "--dry-run"], 2, "13000x13000"),
    (["render", "{same1}", "{same2}", "--model", "tiny", "--dry-run"], 2, "same.json"),
    (R("-o", "{long}"), 2, "-o"),
    (R("-o", "{newline}"), 2, "-o"),
    (R("-o", "{a_file}"), 2, "a_file.txt"),
    (R("-o", "{under_file}"), 2, "a_file.txt"),
    (["render", "{good}", "--model", "tiny", "-o", "{long}"], 2, "-o"),
    (["render", "{good}", "--model", "tiny", "-o", "{under_file}"], 2, "a_file.txt"),
    # render: numbers
    (R("--size", "0x0"), 2, "--size"),
    (R("--size", "8x8"), 2, "--size"),
    (R("--size", "abc"), 2, "--size"),
    (R("--size", "30x30"), 2, "--size"),
    (R("--size", "100000x100000"), 2, "--size"),
    (R("--frames", "10"), 2, "--frames"),
    (R("--frames", "0"), 2, "--frames"),
    (R("--steps", "0"), 2, "--steps"),
    (R("--steps", "10000000000"), 2, "--steps"),
    (R("--seed", "-1"), 2, "--seed"),
    (R("--seed", str(2**32)), 2, "--seed"),
    (R("--rope-shift", "nan"), 2, "--rope-shift"),
    (R("--rope-shift", "inf"), 2, "--rope-shift"),
    (R("--rope-shift", "-5"), 2, "--rope-shift"),
    (R("--guidance", "nan"), 2, "--guidance"),
    (R("--guidance", "0.5"), 2, "--guidance"),
    (R("--guidance-2", "99"), 2, "--guidance-2"),
    (R("--cache-threshold", "0"), 2, "--cache-threshold"),
    (R("--cache-interval", "1"), 2, "--cache-interval"),
    (R("--cache", "magic"), 2, "--cache"),
    (R("--quantize", "int3"), 2, "--quantize"),
    (R("--memory-size", "1", "--sink-size", "5"), 2, "--sink-size"),
    (R("--memory-size", "0"), 2, "--memory-size"),
    (R("--keyframes-per-shot", "0"), 2, "--keyframes-per-shot"),
    (R("--upscale", "0"), 2, "--upscale"),
    (R("--upscale", "17"), 2, "--upscale"),
    (R("--continuation", "sideways"), 2, "--continuation"),
    (R("--shard", "0/2"), 2, "--shard"),
    (R("--shard", "3/2"), 2, "--shard"),
    (R("--shard", "half"), 2, "--shard"),
    # render: files and the machine
    (R("--style-lora", "{nowhere}.safetensors"), 2, "--style-lora"),
    (R("--style-lora", "{a_file}:0.5"), 2, "--style-lora"),
    (R("--lora", "{nowhere}"), 2, "--lora"),
    (R("--model", "no-such-model"), 2, "no-such-model"),
    (R("--model", "{a_dir}"), 2, "a_dir"),
    (R("--model", "{pickle_model}"), 2, "pickle_model"),
    (["render", "{good}", "--model", "tiny", "--device", "bogus", "-o", "{root}/dev1"], 2, "--device"),
    (["render", "{good}", "--model", "tiny", "--device", "cuda:99", "-o", "{root}/dev2"], 2, "--device"),
    # characters (script) and the options that use them
    (["validate", "{ch_pronoun}"], 2, "characters[0].aliases[0]"),
    (["validate", "{ch_twice}"], 2, "characters[1].aliases[0]"),
    (["validate", "{ch_overlap}"], 2, "characters[0].aliases[0]"),
    (["validate", "{ch_unknown}"], 2, "characters[0].nickname"),
    (["validate", "{ch_noname}"], 2, "characters[0].name"),
    (["validate", "{ch_notlist}"], 2, "characters"),
    (["validate", "{ch_aliases}"], 2, "characters[0].aliases"),
    (["validate", "{ch_ref_missing}"], 2, "characters[0].references[0]"),
    (["validate", "{ch_ref_huge}"], 2, "13000x13000"),
    (["validate", "{ch_ref_empty}"], 2, "characters[0].references[0]"),
    (["validate", "{ch_description}"], 2, "characters[0].description"),
    (["render", "{ch_overlap}", "--model", "tiny", "--dry-run"], 2, "characters[0].aliases[0]"),
    (R("--retrieval", "faces"), 2, "--retrieval"),
    (R("--describe-characters=yes"), 2, "--describe-characters"),
    (R("--memory-from", "{nowhere}"), 2, "no such run folder"),
    (R("--memory-from", "{a_dir}"), 2, "not a run folder"),
    (R("--memory-from", "{src_unfinished}"), 2, "has not finished"),
    (R("--memory-from", "{src_other_model}"), 2, "wan2.2-a14b"),
    (R("--memory-from", "{src_damaged}"), 2, "is damaged"),
    # inspect-memory
    (["inspect-memory", "{nowhere}"], 2, "nowhere"),
    (["inspect-memory", "{badmem}"], 2, "memory.json"),
    (["inspect-memory", "{run}", "--shot", "99"], 2, "shot 99"),
    (["inspect-memory", "{run}", "--shot", "0"], 2, "--shot"),
    (["inspect-memory", "{run}", "--sheet", "{a_dir}"], 2, "--sheet"),
    (["inspect-memory", "{run}", "--sheet", "{under_file}.png"], 2, "--sheet"),
    (["inspect-memory", "{run}", "--sheet", "{long}.png"], 2, "--sheet"),
    # add-reference
    (["add-reference", "{run}"], 2, "nothing to do"),
    (["add-reference", "{run}", "{nowhere}.png"], 2, "nowhere.png"),
    (["add-reference", "{run}", "{notimage}"], 2, "notes.png"),
    (["add-reference", "{run}", "{small_img}"], 2, "icon.png"),
    (["add-reference", "{run}", "{huge_img}"], 2, "huge.png"),
    (["add-reference", "{run}", "{truncated_img}"], 2, "cut.png"),
    (["add-reference", "{run}", "{img}"], 2, "already in memory"),
    (["add-reference", "{run}", "--remove", "no-such-id"], 2, "no-such-id"),
    (["add-reference", "{run}", "{img}", "--name", "a", "--name", "b"], 2, "--name"),
    (["add-reference", "{a_file}", "{img}"], 2, "a_file.txt"),
    (["add-reference", "{under_file}", "{img}"], 2, "a_file.txt"),
    (["add-reference", "{long}", "{img}"], 2, "x" * 40),
    (["add-reference", "{nowhere}", "--remove", "x"], 2, "nowhere"),
    # eval
    (["eval", "{nowhere}", "--models", "tiny"], 2, "nowhere"),
    (["eval", "--models", "tiny"], 2, "RUN_DIR"),
    (["eval", "{run}", "--models", "bogus"], 2, "--models"),
    (["eval", "{run}", "--metrics", "beauty", "--models", "tiny"], 2, "beauty"),
    (["eval", "--script", "{good}", "--models", "tiny"], 2, "--shots"),
    (["eval", "{a_dir}", "--models", "tiny", "--plot", "{a_dir}"], 2, "--plot"),
    (["eval", "{a_dir}", "--models", "tiny", "--plot", "{under_file}.png"], 2, "--plot"),
    # train
    (["train", "{nowhere}", "-o", "{root}/t1"], 2, "nowhere"),
    (["train", "{dataset_noindex}", "-o", "{root}/t2"], 2, "index.json"),
    (["train", "{dataset_noindex}", "-o", "{a_file}"], 2, "a_file.txt"),
    (["train", "{dataset_noindex}", "-o", "{under_file}"], 2, "a_file.txt"),
    (["train", "{dataset_noindex}", "-o", "{long}"], 2, "-o"),
    (["train", "{dataset_noindex}", "-o", "{root}/t3", "--rope-shift", "nan"], 2, "--rope-shift"),
]


def _fill(arg: str, place: dict) -> str:
    for key, path in place.items():
        arg = arg.replace("{" + key + "}", str(path))
    return arg


@pytest.mark.parametrize(("argv", "code", "culprit"), CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input_is_refused_clearly(place, argv, code, culprit):
    args = [_fill(arg, place) for arg in argv]
    result = CliRunner().invoke(app, args)
    output = result.output  # stdout and stderr together
    assert result.exit_code == code, output
    assert culprit in output, output
    assert "Traceback" not in output
    # A Python exception escaping the app would be kept here by the runner, not printed.
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def test_the_table_is_large_and_covers_every_command():
    assert len(CASES) >= 60
    assert {argv[0] for argv, _, _ in CASES} >= {"validate", "render", "inspect-memory", "add-reference", "eval", "train"}
