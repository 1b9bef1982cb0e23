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
    _hostile_files(p, script)  # issue 34
    return p


DEEP = "[" * 5000 + "]" * 5000  # any JSON file nested thousands of levels deep


def _edited(source: Path, dest: Path, name: str, edit) -> Path:
    """A copy of the run folder ``source`` whose JSON file ``name`` went through ``edit`` (a function of
    the parsed data returning the new data, or a string: the new text)."""
    import shutil

    shutil.copytree(source, dest)
    data = json.loads((dest / name).read_text())
    new = edit(data)
    (dest / name).write_text(new if isinstance(new, str) else json.dumps(new))
    return dest


def _memory_edit(change):
    def edit(data):
        change(data["entries"])
        return data

    return edit


def _hostile_files(p: dict, script) -> None:
    """Files storymem reads, damaged or hostile (issue 34): one finished 2-shot run of the tiny model
    (1 step, 5 frames) and copies of it with one file edited each."""
    root = p["root"]
    rendered = root / "rendered"
    result = CliRunner().invoke(
        app, ["render", str(p["good"]), "--model", "tiny", "--device", "cpu", "--steps", "1", "--frames", "5",
              "-o", str(rendered)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    p["rendered"] = rendered
    runs = {
        "run_shots_str": ("run.json", lambda d: {**d, "shots": "x"}),
        "run_settings_null": ("run.json", lambda d: {**d, "settings": None}),
        "run_story_num": ("run.json", lambda d: {**d, "story_name": 5}),
        "run_deep": ("run.json", lambda d: json.dumps({**d, "x": 0}).replace('"x": 0', '"x": ' + DEEP)),
        "run_shot_str": ("run.json", lambda d: {**d, "shots": [d["shots"][0], "x"]}),
        "run_shot_mode": ("run.json", lambda d: {**d, "shots": [d["shots"][0], {**d["shots"][1], "mode": "xx"}]}),
        "mem_deep": ("memory.json", lambda d: json.dumps({**d, "x": 0}).replace('"x": 0', '"x": ' + DEEP)),
        "mem_b64": ("memory.json", _memory_edit(lambda e: e[0].update(embedding="not base64!"))),
        "mem_evict": ("memory.json", _memory_edit(lambda e: e[1].update(evicted_by_shot=-5))),
        "mem_evict_sink": ("memory.json", _memory_edit(lambda e: e[0].update(evicted_by_shot=1))),
        "mem_id": ("memory.json", _memory_edit(lambda e: e[0].update(id="s009-f000-00000000", file="memory/s009-f000-00000000.png"))),
        "mem_dup": ("memory.json", _memory_edit(lambda e: e.append(dict(e[0])))),
        "mem_added": ("memory.json", _memory_edit(lambda e: e[0].update(added_by_shot=1))),
        "mem_role": ("memory.json", _memory_edit(lambda e: e[0].update(role="reference"))),
        "mem_sha": ("memory.json", _memory_edit(lambda e: e[0].update(sha256="zz"))),
        "mem_cond": ("memory.json", lambda d: {**d, "conditioning": {**d["conditioning"], "0": [d["entries"][0]["id"]]}}),
        "mem_nan": ("memory.json", _memory_edit(lambda e: e[1].update(novelty=float("nan")))),
    }
    for key, (name, edit) in runs.items():
        p[key] = _edited(rendered, root / key, name, edit)
    p["deep_json"] = script("deep.json", DEEP)
    p["huge_num"] = script("huge_num.json", json.dumps(GOOD_STORY).replace('"scene_num": 1', '"scene_num": ' + "7" * 5000))
    p["dataset_deep"] = root / "dataset_deep"
    p["dataset_deep"].mkdir()
    (p["dataset_deep"] / "index.json").write_text(DEEP)
    _hostile_models(p)
    _hostile_stories(p, script)


class _Payload:
    """A pickle that would create a file if anything unpickled it with code allowed."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil(path: Path, marker: Path) -> Path:
    import pickle

    path.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}))
    return path


def _hostile_models(p: dict) -> None:
    """Model folders, weight files and datasets that must be refused before or while loading (issue 34)."""
    import shutil

    from storymem_cli.models.tiny import tiny_model_dir

    root, tiny = p["root"], tiny_model_dir()
    p["marker"] = root / "payload-ran"

    def model(name: str) -> Path:
        dest = root / name
        shutil.copytree(tiny, dest)
        return dest

    pickled = model("model_pickled")
    for expert in ("transformer", "transformer_2"):
        for sub in ("i2v", "t2v"):
            (pickled / sub / expert / "diffusion_pytorch_model.safetensors").unlink()
            _evil(pickled / sub / expert / "diffusion_pytorch_model.bin", p["marker"])
    p["model_pickled"] = pickled
    remote = model("model_remote")
    config = remote / "i2v" / "tokenizer" / "tokenizer_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "auto_map": {"AutoTokenizer": ["x.Tok", None]}}))
    p["model_remote"] = remote
    p["model_deep_index"] = model("model_deep_index")
    (p["model_deep_index"] / "t2v" / "model_index.json").write_text(DEEP)
    p["model_deep_config"] = model("model_deep_config")
    (p["model_deep_config"] / "i2v" / "transformer" / "config.json").write_text(DEEP)
    p["evil_pth"] = _evil(root / "evil.pth", p["marker"])
    p["broken_st"] = root / "broken.safetensors"
    p["broken_st"].write_bytes(struct.pack("<Q", 10**12) + b"{")
    p["lora_file"] = root / "style.safetensors"
    p["lora_file"].write_bytes(b"")
    clips = root / "dataset_pickled"
    clips.mkdir()
    np.save(clips / "clip.npy", np.array([{"x": 1}], dtype=object))  # an object array: pickled
    np.savez(clips / "clip.npz", frames=np.array([{"x": 1}], dtype=object))
    index = {"format": "storymem-clips", "version": 1, "groups": [{"id": "g", "clips": [{"path": "clip.npz", "caption": "a"}, {"path": "clip.npz", "caption": "b"}]}]}  # fmt: skip
    (clips / "index.json").write_text(json.dumps(index))
    p["dataset_pickled"] = clips
    p["dataset_empty"] = root / "dataset_empty"
    p["dataset_empty"].mkdir()
    (p["dataset_empty"] / "index.json").write_text(json.dumps({"format": "storymem-clips", "version": 1, "groups": []}))


def _hostile_stories(p: dict, script) -> None:
    """Scripts that would fail only at the end, or only in render (issue 34)."""
    root = p["root"]

    def with_reference(name: str, image: str) -> Path:
        return script(name, {**GOOD_STORY, "references": [{"name": "Hero", "image": image}]})

    p["ref_nul"] = with_reference("ref_nul.json", "hero\u0000.png".encode().decode("unicode_escape"))
    (root / "loop").symlink_to(root / "loop")
    p["ref_loop"] = with_reference("ref_loop.json", "loop")
    p["ref_empty"] = with_reference("ref_empty.json", "")
    p["nl_script"] = script("story\nname.json".encode().decode("unicode_escape"), GOOD_STORY)
    p["dotdot"] = script("..json", GOOD_STORY)
    p["lockdir_run"] = root / "lockdir"
    (p["lockdir_run"] / ".storymem.lock").mkdir(parents=True)
    (root / "batch" / "good" / ".storymem.lock").mkdir(parents=True)


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
    # issue 34: files storymem reads, damaged or hostile
    (["validate", "{deep_json}"], 2, "nested more than 64 levels"),
    (["validate", "{huge_num}"], 2, "scenes[0].scene_num: is a number with 5000 digits"),
    (["render", "{good}", "--model", "tiny", "--dry-run", "-o", "{run_shots_str}"], 2, "run.json: shots: Input should be a valid list"),
    (["render", "{good}", "--model", "tiny", "--dry-run", "-o", "{run_settings_null}"], 2, "run.json: settings:"),
    (["render", "{good}", "--model", "tiny", "--dry-run", "-o", "{run_story_num}"], 2, "run.json: story_name:"),
    (["render", "{good}", "--model", "tiny", "--dry-run", "-o", "{run_deep}"], 2, "run.json: is nested more than 64"),
    (["add-reference", "{run_deep}", "{img}"], 2, "run.json"),
    (["eval", "{run_deep}", "--models", "tiny"], 2, "run.json"),
    (["eval", "{run_shots_str}", "--models", "tiny"], 2, "shots"),
    (["inspect-memory", "{mem_deep}"], 2, "memory.json: is nested more than 64"),
    (["render", "{good}", "--model", "tiny", "--dry-run", "-o", "{mem_deep}"], 2, "memory.json"),
    (["inspect-memory", "{mem_b64}"], 2, "entries[0].embedding: is not base64"),
    (["render", "{good}", "--model", "tiny", "--dry-run", "-o", "{mem_b64}"], 2, "entries[0].embedding"),
    (["inspect-memory", "{mem_evict}"], 2, "entries[1].evicted_by_shot"),
    (["render", "{good}", "--model", "tiny", "--dry-run", "-o", "{mem_evict}"], 2, "entries[1].evicted_by_shot"),
    (["inspect-memory", "{mem_evict_sink}"], 2, "entries[0].evicted_by_shot: only window entries"),
    (["inspect-memory", "{mem_id}"], 2, "entries[0].id"),
    (["inspect-memory", "{mem_dup}"], 2, "appears twice"),
    (["inspect-memory", "{mem_added}"], 2, "entries[0].added_by_shot"),
    (["inspect-memory", "{mem_role}"], 2, "entries[0].role"),
    (["inspect-memory", "{mem_sha}"], 2, "entries[0].sha256"),
    (["inspect-memory", "{mem_cond}"], 2, "conditioning.0[0]"),
    (["inspect-memory", "{mem_nan}"], 2, "entries[1].novelty"),
    (["add-reference", "{mem_evict}", "{img}", "--force"], 2, "evicted_by_shot"),
    (["eval", "{rendered}", "--models", "tiny", "--compare", "{deep_json}"], 2, "deep.json"),
    (["train", "{dataset_deep}", "-o", "{root}/t4"], 2, "index.json"),
    (["train", "{dataset_empty}", "-o", "{root}/t5"], 2, "groups"),
    (["train", "{dataset_pickled}", "-o", "{root}/t6", "--max-steps", "1", "--device", "cpu"], 2, "refused: the clip holds pickled"),
    (["render", "{good}", "--model", "{model_deep_index}", "--dry-run"], 2, "model_index.json"),
    (["render", "{good}", "--model", "{model_deep_config}", "--dry-run"], 2, "config.json"),
    (["render", "{good}", "--model", "{model_remote}", "--dry-run"], 2, "trust_remote_code stays False"),
    # issue 34: pickles are refused in our words, never with torch's advice to turn weights_only off
    (["eval", "{rendered}", "--metrics", "aesthetic", "--clip-l", "{evil_pth}", "--aesthetic-head", "{evil_pth}", "--device", "cpu"], 2, "evil.pth is a pickled file"),
    (["eval", "{rendered}", "--metrics", "prompt_single", "--viclip", "{evil_pth}", "--device", "cpu"], 2, "evil.pth is a pickled file"),
    (["eval", "{rendered}", "--metrics", "prompt_single", "--viclip", "{broken_st}", "--device", "cpu"], 2, "broken.safetensors is not a readable"),
    # issue 34: stories that could never finish, refused before the first shot
    (["render", "{nl_script}", "--model", "tiny", "--dry-run"], 2, "line break"),
    (["render", "{good}", "{dotdot}", "--model", "tiny", "--dry-run", "-o", "{root}/b1"], 2, "gives no name for its run folder"),
    (["render", "{good}", "--model", "tiny", "--device", "cpu", "-o", "{lockdir_run}"], 2, ".storymem.lock is a folder"),
    (["render", "{good}", "{same1}", "--model", "tiny", "--device", "cpu", "-o", "{root}/batch"], 2, ".storymem.lock is a folder"),
    # issue 34: options and script fields
    (["validate", "{ref_nul}"], 2, "references[0].image"),
    (["render", "{ref_nul}", "--model", "tiny", "--dry-run"], 2, "references[0].image"),
    (["validate", "{ref_loop}"], 2, "references[0].image"),
    (["render", "{ref_loop}", "--model", "tiny", "--dry-run"], 2, "references[0].image"),
    (["validate", "{ref_empty}"], 2, "references[0].image"),
    (["render", "{ref_empty}", "--model", "tiny", "--dry-run"], 2, "references[0].image"),
    (["render", "{good}", "--model", "tiny", "--device", "cpu", "--attention", "_native_cudnn", "-o", "{root}/a1"], 2, "--attention _native_cudnn"),
    (["render", "{good}", "--model", "tiny", "--device", "cpu", "--attention", "", "-o", "{root}/a2"], 2, "--attention ''"),
    (["render", "{good}", "--model", "tiny", "--device", "mps", "-o", "{root}/a3"], 2, "--device mps"),
    (["render", "{good}", "--model", "tiny", "--device", "xpu", "-o", "{root}/a4"], 2, "--device xpu"),
    (["train", "{dataset_noindex}", "-o", "{root}/t8", "--device", "bogus"], 2, "--device"),
    (["train", "{dataset_noindex}", "-o", "{root}/t9", "--device", "cuda:99"], 2, "--device cuda:99"),
    (R("--style-lora", "{a_dir}"), 2, "--style-lora"),
    (R("--style-lora", "high="), 2, "--style-lora"),
    (R("--frames", "4097"), 2, "--frames 4097"),
    (R("--lora", "{lora_file}"), 2, "--lora"),
    (R("--shard", "1/1000000"), 0, "shares 2-1000000 render nothing"),  # a word, not a refusal: arrays outgrow lists
    (R("--scheduler", "ddim"), 2, "--scheduler"),
    (R("--cache", "magcache", "--magcache-threshold", "-1"), 2, "--magcache-threshold"),
    (R("--cache", "magcache", "--magcache-k", "0"), 2, "--magcache-k"),
    (R("--cache", "magcache", "--magcache-retention", "1"), 2, "--magcache-retention 1.0: must be a number at least 0 and below 1"),
    (R("--cache", "magcache", "--magcache-experts", "mid"), 2, "--magcache-experts"),
    (R("--cache", "magcache", "--magcache-curve", "{nowhere}.json"), 2, "--magcache-curve"),
    (R("--cache", "magcache", "--magcache-calibrate", "{root}/ratios.json"), 2, "--magcache-calibrate"),
    (R("--flow-shift", "m2v=-1"), 2, "--flow-shift"),
    (["download", "--model", "nope"], 2, "nope"),
    (["download", "--continuation", "sideways"], 2, "--continuation"),
    (["download", "--aesthetic", "pretty"], 2, "--aesthetic"),
    (["download", "--local-dir", "{a_file}", "--dry-run", "--json"], 2, "--local-dir"),
    (["doctor", "--model", "nope", "--json"], 2, "nope"),
    (["doctor", "--continuation", "sideways"], 2, "--continuation"),
    (["doctor", "--aesthetic", "pretty"], 2, "--aesthetic"),
    (["export", "{root}", "--format", "mov"], 2, "--format"),
    (["export", "{root}", "--json"], 2, "no run.json"),
    (["export", "{root}", "-o", "{a_file}/x"], 2, "-o"),
    (["train", "{dataset_noindex}", "-o", "{root}/t10", "--max-steps", "0"], 2, "--max-steps"),
    (["train", "{dataset_noindex}", "-o", "{root}/t11", "--lr", "inf"], 2, "--lr"),
    (["train", "{dataset_noindex}", "-o", "{root}/t12", "--lr", "nan"], 2, "--lr"),
    # every other option of every command at least once (issue 34)
    (["train", "{dataset_noindex}", "-o", "{root}/tr0", "--vae-kl-weight", "-1"], 2, "--vae-kl-weight"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr1", "--vae-chroma-weight", "-1"], 2, "--vae-chroma-weight"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr2", "--loss-chroma-weight", "nan"], 2, "--loss-chroma-weight"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr3", "--time-limit", "0"], 2, "--time-limit"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr4", "--batch-size", "0"], 2, "--batch-size"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr5", "--grad-accum", "0"], 2, "--grad-accum"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr6", "--warmup-steps", "-1"], 2, "--warmup-steps"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr7", "--lr-schedule", "wavy"], 2, "--lr-schedule"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr8", "--schedule-steps", "0"], 2, "--schedule-steps"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr9", "--seed", "-1"], 2, "--seed"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr10", "--dtype", "int3"], 2, "--dtype"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr11", "--experts", "middle"], 2, "--experts"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr12", "--lora-rank", "0"], 2, "--lora-rank"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr13", "--lora-alpha", "0"], 2, "--lora-alpha"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr14", "--lora-dropout", "1"], 2, "--lora-dropout"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr15", "--memory-min", "0"], 2, "--memory-min"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr16", "--memory-max", "0"], 2, "--memory-max"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr17", "--memory-frame-stride", "0"], 2, "--memory-frame-stride"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr18", "--no-memory-share", "2"], 2, "--no-memory-share"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr19", "--first-frame-prob", "-0.5"], 2, "--first-frame-prob"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr20", "--continuation", "sideways"], 2, "--continuation"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr21", "--caption-dropout", "1"], 2, "--caption-dropout"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr22", "--rope", "sideways"], 2, "--rope"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr23", "--timestep-sampling", "random"], 2, "--timestep-sampling"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr24", "--timestep-shift", "0"], 2, "--timestep-shift"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr25", "--width", "17"], 2, "width=17"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr26", "--height", "8"], 2, "--height"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr27", "--frames", "4"], 2, "frames=4"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr28", "--t2v-share", "2"], 2, "--t2v-share"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr29", "--latent-cache-mb", "-1"], 2, "--latent-cache-mb"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr30", "--checkpoint-every", "0"], 2, "--checkpoint-every"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr31", "--keep-checkpoints", "0"], 2, "--keep-checkpoints"),
    (["train", "{dataset_noindex}", "-o", "{root}/tr32", "--log-every", "0"], 2, "--log-every"),
    (["train", "{dataset_pickled}", "-o", "{root}/tm1", "--model", "no-such-model"], 2, "no-such-model"),
    (["train", "{dataset_noindex}", "-o", "{root}/tm2", "--stage", "vae"], 2, "stage"),
    (["train", "{dataset_noindex}", "-o", "{root}/tm3", "--vae", "{a_dir}"], 2, "vae"),
    (["train", "{dataset_noindex}", "-o", "{root}/tm4", "--init", "{a_dir}"], 2, "init"),
    (["train", "{dataset_noindex}", "-o", "{root}/tm5", "--from-scratch", "--m2v-from-t2v"], 2, "m2v_from_t2v"),
    (["train", "{dataset_noindex}", "-o", "{root}/tm6", "--from-scratch", "--vae-decoder-only"], 2, "vae_decoder_only"),
    (["train", "{dataset_noindex}", "-o", "{root}/tm7", "--from-scratch", "--vae-inflate"], 2, "vae_inflate"),
    (["train", "{dataset_noindex}", "-o", "{root}/tm8", "--train-text-encoder"], 2, "train_text_encoder"),
    (["train", "{nowhere}", "-o", "{root}/tm9", "--gradient-checkpointing", "--json"], 2, "nowhere"),
    (["validate", "{nowhere}", "--json"], 2, "nowhere"),
    (["validate", "--schema", "--json", "{good}"], 2, "--schema"),
    (R("--rope", "sideways"), 2, "--rope"),
    (R("--keyframes", "sometimes"), 2, "--keyframes"),
    (R("--aesthetic", "beauty"), 2, "--aesthetic"),
    (R("--offload", "somewhere"), 2, "--offload"),
    (R("--dtype", "int3"), 2, "--dtype"),
    (R("--parallel", "sideways"), 2, "--parallel"),
    (R("--no-memory", "--vae-tiling", "--compile", "--restart", "--json", "--size", "abc"), 2, "--size"),
    (["inspect-memory", "{nowhere}", "--all", "--json"], 2, "nowhere"),
    (["add-reference", "{run}", "{nowhere}.png", "--json"], 2, "nowhere.png"),
    (["eval", "--script", "{good}", "--shots", "{nowhere}", "--models", "tiny", "--label", "x"], 2, "--shots"),
    (["eval", "{rendered}", "--models", "tiny", "--json", "--csv"], 2, "--json/--csv"),
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
    assert "weights_only=False" not in output  # torch's advice would run a pickle's code
    assert not place["marker"].exists()  # no pickled payload ran
    # A Python exception escaping the app would be kept here by the runner, not printed.
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def test_the_table_is_large_and_covers_every_command():
    assert len(CASES) >= 60
    assert {argv[0] for argv, _, _ in CASES} >= {"validate", "render", "inspect-memory", "add-reference", "eval", "train"}


@pytest.mark.parametrize("key", ["run_shot_str", "run_shot_mode"])
def test_a_damaged_shot_record_renders_again_from_that_shot(place, key):
    """run.json's record of shot 2 has the wrong shape: shot 1 is kept, shot 2 renders again, and a
    warning names the field (docs/run-folder.md, Damage)."""
    result = CliRunner().invoke(app, ["render", str(place["good"]), "--model", "tiny", "--device", "cpu", "--steps", "1",
                                      "--frames", "5", "-o", str(place[key]), "--dry-run", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [shot["action"] for shot in json.loads(result.stdout)["shots"]] == ["keep", "render"]
    assert "shot 2 cannot be kept: run.json shots[1]" in result.stderr


def test_a_deleted_tail_is_repaired_with_the_promised_warning(place, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(place["rendered"], run)
    (run / "shots" / "shot_001.tail.npz").unlink()
    result = CliRunner().invoke(app, ["render", str(place["good"]), "--model", "tiny", "--device", "cpu", "--steps", "1",
                                      "--frames", "5", "-o", str(run), "--dry-run", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "shot 1 cannot be kept: shot_001.tail.npz is missing" in result.stderr
    assert [shot["action"] for shot in json.loads(result.stdout)["shots"]] == ["render", "render"]


def test_the_table_covers_every_option_of_every_command():
    """Each option (by any of its names) of each command appears in at least one row (issue 34)."""
    from typer.main import get_command

    group = get_command(app)
    ctx = group.make_context("storymem", [], resilient_parsing=True)
    used: dict[str, set[str]] = {}
    for argv, _, _ in CASES:
        used.setdefault(argv[0], set()).update(arg.split("=")[0] for arg in argv[1:])
    missing = []
    for name in group.list_commands(ctx):
        for param in group.get_command(ctx, name).params:
            if param.param_type_name == "option" and not set(param.opts + param.secondary_opts) & used.get(name, set()):
                missing.append(f"{name} {param.opts[0]}")
    assert not missing, missing


def test_a_model_folder_with_pickled_transformers_is_refused_in_our_words(place, tmp_path):
    """In a subprocess: diffusers logs through a handler the in-process runner cannot keep open."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "storymem_cli", "render", str(place["good"]), "--model", str(place["model_pickled"]),
         "--device", "cpu", "--steps", "1", "--frames", "5", "-o", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "diffusion_pytorch_model.bin is a pickled file" in result.stderr and "nothing in it ran" in result.stderr
    assert "Traceback" not in result.stderr and "weights_only=False" not in result.stderr
    assert not place["marker"].exists()
