"""The training loop: steps, learning rate, checkpoints, resume, time limit, the final export.

Everything random in step ``k`` (which samples, sigmas, noise, LoRA dropout) is drawn from generators
seeded by ``(seed, k)``, so a run resumed from a checkpoint at step ``k`` continues exactly as an
uninterrupted run would (bit for bit on a CPU): the checkpoint needs only weights, optimiser state
and the step. The global torch RNG state is saved as well, for code that draws from it.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from storymem_cli.errors import InvalidInputError
from storymem_cli.toy.dataset import load_index
from storymem_cli.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from storymem_cli.train.config import TrainConfig
from storymem_cli.train.data import ClipStore, draw_batch, draw_window
from storymem_cli.train.setup import Trainee, build_trainee
from storymem_cli.train.step import (
    LatentCache,
    TextCache,
    draw_sigmas,
    encode_batch,
    flow_loss,
    u_range,
    video_pixels,
)
from storymem_cli.train.vae import vae_loss

CONFIG_FILE = "train.json"
LATENT_CACHE_FILE = "latent_cache.pt"  # saved at the end of a stage: the next stage starts warm
LOG_FILE = "log.jsonl"  # one line per logged step; a killed run's last lines may be redone after resume

EXPORT_STREAM = 3  # seed stream of the clips an export measures (steps use [seed, step])

Progress = Callable[[dict], None]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then constant or cosine down to ``lr_min`` at ``schedule_steps``."""
    peak = cfg.learning_rate
    if step < cfg.warmup_steps:
        return peak * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return peak
    assert cfg.schedule_steps is not None
    span = max(1, cfg.schedule_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.lr_min + 0.5 * (peak - cfg.lr_min) * (1.0 + math.cos(math.pi * progress))


def check_resumable(cfg: TrainConfig, out: Path) -> None:
    """Refuse to continue a run in ``out`` that was started with other settings."""
    path = out / CONFIG_FILE
    if not path.is_file():
        return
    try:
        saved = TrainConfig.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise InvalidInputError(f"{path}: not a readable training config ({err})") from None
    old, new = saved.fingerprint(), cfg.fingerprint()
    changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if changed:
        diffs = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:6])
        raise InvalidInputError(
            f"{out} holds a training run with other settings ({diffs})",
            hint="resume with the same settings (only --max-steps, --time-limit, --device and logging may "
            "change), or train into a new --out folder",
        )


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


class Trainer:
    """One training run in ``cfg.output``: builds the model, resumes, steps, checkpoints, exports."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.out = cfg.output
        self.index, root = load_index(cfg.dataset)
        check_resumable(cfg, self.out)
        self.store = ClipStore(self.index, root)
        self.trainee: Trainee = build_trainee(cfg)
        self.optimizer = torch.optim.AdamW(
            self.trainee.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        self.text = TextCache()
        self.latents = LatentCache(cfg.latent_cache_mb << 20)
        self._cache_tag = None
        self._cache_loaded_from: str | None = None
        if cfg.stage == "transformer":  # a VAE in training must not be served stale latents
            self.latents.install(self.trainee.pipe)
            self._cache_tag = LatentCache.vae_tag(self.trainee.pipe.vae)
            self._cache_loaded_from = self._load_latent_cache()
        self.step = 0
        self.elapsed_before = 0.0
        self.resumed_from: str | None = None
        self._saved_at: int | None = None  # step of the newest checkpoint this process wrote or resumed from
        checkpoint = latest_checkpoint(self.out)
        if checkpoint is not None:
            weights, trainer, state = load_checkpoint(checkpoint)
            self.trainee.load_state(weights)
            self.optimizer.load_state_dict(trainer["optimizer"])
            torch.set_rng_state(trainer["torch_rng"])
            self.step, self.elapsed_before = int(state["step"]), float(state.get("elapsed_seconds", 0.0))
            self.resumed_from = str(checkpoint)
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / f".{CONFIG_FILE}.tmp-{os.getpid()}"
        tmp.write_text(cfg.model_dump_json(indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, self.out / CONFIG_FILE)

    # -- one step ---------------------------------------------------------------------------------------

    def _route(self, rng: np.random.Generator, kind: str) -> tuple[torch.nn.Module, tuple[float, float]]:
        t = self.trainee
        sampling, cfg = self.cfg.timestep_sampling, self.cfg
        if cfg.mode == "scratch":  # one model per kind, on the whole noise range
            return t.routes[kind], u_range(None, t.boundary, sampling, t.shift)
        expert = cfg.experts
        if expert == "both":  # which expert's range this batch falls in, with the sampling's own odds
            cut = u_range("high", t.boundary, sampling, t.shift)[0]
            expert = "high" if rng.random() >= cut else "low"
        return t.routes[expert], u_range(expert, t.boundary, sampling, t.shift)

    def _windows(self, rng: np.random.Generator, n: int) -> list[torch.Tensor]:
        """``n`` random clip windows as (1, 3, F, H, W) pixels in [-1, 1]."""
        video, out = self.trainee.video, []
        for _ in range(n):
            group, clip, start = draw_window(rng, self.index, video.frames, self.store.frame_count)
            frames = self.store.clip(group, clip)[start : start + video.frames]
            out.append(video_pixels(self.trainee.pipe, frames, video.height, video.width))
        return out

    def _micro_batch(self, rng: np.random.Generator, gen: torch.Generator) -> torch.Tensor:
        t, cfg = self.trainee, self.cfg
        video = t.video
        if cfg.stage == "vae":
            pixels = torch.cat(self._windows(rng, cfg.batch_size)).to(t.device)
            return vae_loss(t.pipe.vae, pixels, gen, cfg.vae_kl_weight, cfg.vae_chroma_weight)
        layout, specs = draw_batch(rng, self.index, cfg, video.frames, self.store.frame_count, t2v="t2v" in t.trainable)
        samples = [self.store.materialise(s, video.frames) for s in specs]
        batch = encode_batch(t.pipe, samples, video.height, video.width, t.device, self.text, t.text_frozen,
                             cfg.loss_chroma_weight)  # fmt: skip
        model, (lo, hi) = self._route(rng, layout.kind)
        sigma = draw_sigmas(gen, len(samples), lo, hi, cfg.timestep_sampling, t.shift)
        noise = torch.randn(batch.x0.shape, generator=gen).to(t.device)
        return flow_loss(model, batch, sigma.to(t.device), noise, cfg.rope, t.autocast_dtype)

    def train_step(self) -> float:
        """One optimiser step (``grad_accum`` micro-batches); returns the mean loss."""
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, self.step])
        gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
        torch.manual_seed(int(rng.integers(2**62)))  # LoRA / text encoder dropout
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, cfg)
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(cfg.grad_accum):
            loss = self._micro_batch(rng, gen) / cfg.grad_accum
            loss.backward()
            total += float(loss.detach())
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.trainee.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.step += 1
        return total

    @torch.no_grad()
    def fixed_loss(self, seed: int = 12345, batches: int = 4) -> float:
        """Mean loss on batches drawn from ``seed`` alone (not the run's seed or step): a fixed yardstick."""
        losses = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # LoRA dropout, if any, the same every time
            for i in range(batches):
                rng = np.random.default_rng([seed, i])
                gen = torch.Generator().manual_seed(seed + i)
                losses.append(float(self._micro_batch(rng, gen)))
        return float(np.mean(losses))

    # -- the run ------------------------------------------------------------------------------------------

    def checkpoint(self, elapsed: float, last_loss: float | None) -> Path:
        trainer = {"optimizer": self.optimizer.state_dict(), "torch_rng": torch.get_rng_state()}
        state = {"elapsed_seconds": elapsed, "loss": last_loss, "config": self.cfg.model_dump(mode="json")}
        return save_checkpoint(self.out, self.step, self.trainee.state(), trainer, state, self.cfg.keep_checkpoints)

    def _steps(self, start: float, start_step: int, limit: float | None, losses: list[float], log, progress) -> str:
        """Train until max_steps or the time limit; returns why it stopped."""
        cfg = self.cfg
        while self.step < cfg.max_steps:
            if limit is not None and time.monotonic() - start >= limit:
                return "time_limit"
            loss = self.train_step()
            losses.append(loss)
            seconds = time.monotonic() - start
            rate = (self.step - start_step) / seconds if seconds > 0 else 0.0
            info = {"step": self.step, "max_steps": cfg.max_steps, "loss": loss, "lr": lr_at(self.step - 1, cfg),
                    "steps_per_second": rate, "seconds": seconds,
                    "eta_seconds": (cfg.max_steps - self.step) / rate if rate else None}  # fmt: skip
            if progress is not None:
                progress(info)
            if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                log.write(json.dumps({k: info[k] for k in ("step", "loss", "lr", "seconds")}) + "\n")
                log.flush()
            if self.step % cfg.checkpoint_every == 0:
                self.checkpoint(self.elapsed_before + seconds, loss)
                self._saved_at = self.step
        return "max_steps"

    def _load_latent_cache(self) -> str | None:
        """Start warm from this run's saved cache, else from that of the run ``--init`` came from
        (``RUN/model`` beside ``RUN/latent_cache.pt``): keys hash the pixels and the tag the VAE, so
        either serves only latents this stage would have computed itself."""
        candidates = [self.out / LATENT_CACHE_FILE]
        if self.cfg.init is not None:
            candidates.append(Path(self.cfg.init).expanduser().parent / LATENT_CACHE_FILE)
        for path in candidates:
            if self.latents.load(path, self._cache_tag, self.trainee.device):
                return str(path)
        return None

    def _save_latent_cache(self) -> None:
        """Save when the cache holds latents this run's file lacks: new ones (misses), or all of
        them when they came from the ``--init`` run's file, so a stage started from this run's
        model starts warm too (c1 -> c2 -> c3)."""
        own = self.out / LATENT_CACHE_FILE
        borrowed = self._cache_loaded_from is not None and Path(self._cache_loaded_from) != own
        if self._cache_tag is not None and (self.latents.misses or borrowed):
            self.latents.save(own, self._cache_tag)

    def run(self, progress: Progress | None = None) -> dict:
        """Train; SIGTERM stops it like Ctrl-C (a checkpoint and the latent cache, then KeyboardInterrupt),
        because a job started with ``&`` from a script has SIGINT ignored and is stopped with ``kill``."""
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
        try:
            return self._run(progress)
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous)

    def _run(self, progress: Progress | None) -> dict:
        cfg = self.cfg
        start_step, start = self.step, time.monotonic()
        limit = cfg.time_limit_minutes * 60 if cfg.time_limit_minutes else None
        losses: list[float] = []
        self._saved_at = self.step if self.resumed_from else None
        try:
            with open(self.out / LOG_FILE, "a", encoding="utf-8") as log:
                stopped = self._steps(start, start_step, limit, losses, log, progress)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see run()): keep the steps and the warm cache
            self.checkpoint(self.elapsed_before + time.monotonic() - start, losses[-1] if losses else None)
            self._save_latent_cache()
            raise
        seconds = time.monotonic() - start
        checkpoint = self.checkpoint(self.elapsed_before + seconds, losses[-1] if losses else None) \
            if self._saved_at != self.step else latest_checkpoint(self.out)  # fmt: skip
        self._save_latent_cache()
        exported = self.trainee.export(self.out, lambda n: self._windows(np.random.default_rng([EXPORT_STREAM, cfg.seed]), n))
        tail = losses[-cfg.log_every :]
        return {
            "output": str(self.out),
            "mode": cfg.mode,
            "stopped": stopped,
            "step": self.step,
            "start_step": start_step,
            "max_steps": cfg.max_steps,
            "resumed_from": self.resumed_from,
            "first_loss": losses[0] if losses else None,
            "last_loss": float(np.mean(tail)) if tail else None,
            "seconds": round(seconds, 3),
            "total_seconds": round(self.elapsed_before + seconds, 3),
            "steps_per_second": (self.step - start_step) / seconds if seconds > 0 else None,
            "checkpoint": str(checkpoint) if checkpoint else None,
            "latent_cache": {"hits": self.latents.hits, "misses": self.latents.misses,
                             "loaded_from": self._cache_loaded_from},
            "exported": exported,
        }


def train(cfg: TrainConfig, progress: Progress | None = None) -> dict:
    """Train (or resume) the run ``cfg`` describes; returns the summary ``storymem train --json`` prints."""
    return Trainer(cfg).run(progress)
