"""The toy preset's weights: a model `storymem train` trained on the toy world, shipped with the package.

The weights live in ``models/toy_weights/toy.safetensors``: one file with every trained tensor under a
prefix (``text_encoder.``, ``vae.``, ``i2v.``, ``t2v.``), each transformer stored once, and in its
metadata the model size (``train.scratch.ScratchSize``) and the VAE config (with its latent
statistics). ``toy.json`` beside it says how it was trained. :func:`toy_model_dir` rebuilds the
components from the size, loads the tensors, and writes a normal model folder into the cache, the
same layout as a `storymem train --from-scratch` export, so `--model toy` runs through exactly the
loader, pipeline, memory and renderer every other model uses.

    python -m storymem_cli.models.toy pack toy-run/dit/model --card card.json   # after training
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from storymem_cli.errors import MissingWeightsError
from storymem_cli.models.cache import cached_model_dir
from storymem_cli.models.presets import TOY
from storymem_cli.models.tiny import MODEL_FILE

WEIGHTS_DIR = Path(__file__).with_name("toy_weights")
WEIGHTS_FILE = WEIGHTS_DIR / "toy.safetensors"
CARD_FILE = WEIGHTS_DIR / "toy.json"  # how the weights were trained: commands, steps, losses, times
FORMAT = "1"
PARTS = ("text_encoder", "vae", "i2v", "t2v")


def toy_weights_present() -> bool:
    return WEIGHTS_FILE.is_file()


def toy_weights_hash() -> str:
    # Not the packages' __version__: importing them imports torch (4 s), and a dry run needs no torch.
    from importlib.metadata import version

    digest = hashlib.sha256(WEIGHTS_FILE.read_bytes())
    digest.update(f"{version('diffusers')} {version('transformers')}".encode())
    return digest.hexdigest()[:12]


def toy_model_dir() -> Path:
    """The toy model as a model folder in the cache, built once per weights file."""
    if not toy_weights_present():
        raise MissingWeightsError(
            f"the toy model's weights are missing ({WEIGHTS_FILE})",
            hint="reinstall storymem, or train them: see docs/training.md (the toy model in resumable stages)",
        )
    return cached_model_dir(f"toy-{toy_weights_hash()}", MODEL_FILE, write_toy_model)


def load_toy_parts(path: Path = WEIGHTS_FILE) -> dict[str, Any]:
    """The toy model's components (tokenizer, text encoder, VAE, scheduler, i2v, t2v) with the packed
    weights loaded; every tensor of every part must be in the file, and nothing else."""
    from safetensors import safe_open

    from storymem_cli.train.scratch import ScratchSize, build_scratch_components

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise MissingWeightsError(f"{path}: not a packed toy model (format {meta.get('format')!r})")
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    size = ScratchSize.model_validate_json(meta["size"])
    parts = build_scratch_components(size, seed=0)
    vae_config = json.loads(meta["vae_config"])
    parts["vae"].register_to_config(latents_mean=vae_config["latents_mean"], latents_std=vae_config["latents_std"])
    for name in PARTS:
        own = {k.removeprefix(f"{name}."): v for k, v in tensors.items() if k.startswith(f"{name}.")}
        missing, unexpected = parts[name].load_state_dict(own, strict=False)
        tied = _aliases(parts[name].state_dict())  # once per part, not once per missing key
        missing = [k for k in missing if k not in tied]
        if missing or unexpected:
            raise MissingWeightsError(
                f"{path}: the {name} weights do not fit the toy model (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
    return parts


def _aliases(state: dict[str, Any]) -> set[str]:
    """Keys whose tensor shares storage with an earlier key (tied weights, e.g. UMT5's embeddings)."""
    seen: set[int] = set()
    out = set()
    for key, tensor in state.items():
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in seen:
            out.add(key)
        seen.add(ptr)
    return out


def write_toy_model(dest: Path) -> Path:
    """The model folder of the packed weights, written into ``dest`` (an empty folder)."""
    from storymem_cli.train.scratch import write_model_dir

    write_model_dir(dest, load_toy_parts(), TOY)
    return dest


def pack_toy_weights(
    model_dir: Path, out: Path = WEIGHTS_FILE, card: dict | None = None, vae_dir: Path | None = None
) -> Path:
    """Pack a `storymem train --from-scratch --model toy` export into one safetensors file.

    The export stores each transformer twice (as both experts); a from-scratch toy model trains one
    transformer per kind, so the pack keeps one copy and refuses a folder whose experts differ.
    ``vae_dir``: a VAE whose decoder was fine-tuned afterwards (`--vae-decoder-only`) replaces the
    model's; its encoder must be the model's, bit for bit, or the transformers' latents would not fit.
    """
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from safetensors.torch import save_file
    from transformers import UMT5EncoderModel

    from storymem_cli.train.scratch import SCRATCH_SIZES

    record = json.loads((model_dir / MODEL_FILE).read_text(encoding="utf-8"))
    if record["preset"]["video"] != TOY.video.model_dump(mode="json"):
        raise MissingWeightsError(f"{model_dir}: not a toy-size model (video {record['preset']['video']})")
    i2v, t2v = model_dir / "i2v", model_dir / "t2v"
    vae = AutoencoderKLWan.from_pretrained(i2v, subfolder="vae")
    if vae_dir is not None:
        tuned = AutoencoderKLWan.from_pretrained(vae_dir)
        mine, theirs = vae.state_dict(), tuned.state_dict()
        if any(not torch.equal(v, theirs[k]) for k, v in mine.items() if k.startswith(("encoder.", "quant_conv."))):
            raise MissingWeightsError(f"--vae {vae_dir}: its encoder is not the model's; only a decoder-only fine-tune fits")
        vae = tuned
    modules = {
        "text_encoder": UMT5EncoderModel.from_pretrained(i2v, subfolder="text_encoder"),
        "vae": vae,
        "i2v": WanTransformer3DModel.from_pretrained(i2v, subfolder="transformer"),
        "t2v": WanTransformer3DModel.from_pretrained(t2v, subfolder="transformer"),
    }
    for folder, kind in ((i2v, "i2v"), (t2v, "t2v")):
        second = WanTransformer3DModel.from_pretrained(folder, subfolder="transformer_2").state_dict()
        if any(not torch.equal(v, second[k]) for k, v in modules[kind].state_dict().items()):
            raise MissingWeightsError(f"{folder}: transformer and transformer_2 differ; a toy model has one per kind")
    tensors = {}
    for name, module in modules.items():
        state = module.state_dict()
        tied = _aliases(state)  # a tied tensor is stored once; loading ties it again
        tensors.update({f"{name}.{k}": v.contiguous() for k, v in state.items() if k not in tied})
    meta = {
        "format": FORMAT,
        "size": SCRATCH_SIZES["toy"].model_dump_json(),
        "vae_config": json.dumps({k: vae.config[k] for k in ("latents_mean", "latents_std")}),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata=meta)
    if card is not None:
        CARD_FILE.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m storymem_cli.models.toy", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    pack = sub.add_parser("pack", help="pack a trained toy model folder into the package's toy.safetensors")
    pack.add_argument("model_dir", type=Path, help="OUT/model of `storymem train --from-scratch --model toy`")
    pack.add_argument("--out", type=Path, default=WEIGHTS_FILE)
    pack.add_argument("--card", type=Path, help="a JSON file describing the training run, copied to toy.json")
    pack.add_argument("--vae", type=Path, help="a decoder-only fine-tune of the model's VAE to ship instead")
    args = parser.parse_args(argv)
    card = json.loads(args.card.read_text(encoding="utf-8")) if args.card else None
    out = pack_toy_weights(args.model_dir, args.out, card, args.vae)
    json.dump({"weights": str(out), "bytes": out.stat().st_size}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
