"""MagCache (Ma et al. 2025, arXiv:2506.09045) on the Wan2.2 experts through diffusers' ``MagCacheConfig``.

MagCache skips a step's transformer blocks and reuses the last computed residual while the product
of the residual-magnitude ratios since then stays close to 1. The ratios are a property of the model
and the sampler, measured once ("calibration"), so the decision to skip is made from the curve alone:
the same on every rank, and computable without weights (:func:`skip_schedule`, docs/models.md).

The curves come from the authors' Wan2.2 code (``data/magcache_wan22.json``, Apache-2.0, source and
commit in the file) or from a calibration render of one's own (``--magcache-calibrate``). A curve
covers a whole trajectory across both experts; each expert gets its own ``MagCacheConfig`` with its
own step count and its slice of the curve, set again before every shot (T2V and M2V shots split
their steps differently between the experts). diffusers keeps one curve for the conditional and
unconditional calls (each keeps its own state); we give it the conditional one (the published
unconditional curves differ from it by at most 0.0027).

Pure functions (no torch) above the line; the hooks below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from storymem_cli.errors import InvalidInputError

if TYPE_CHECKING:
    from storymem_cli.config import SamplingConfig
    from storymem_cli.models.runtime import RuntimeOptions

Kind = Literal["t2v", "m2v"]  # the two pairs of experts a story uses (StoryModel's pipelines)
Expert = Literal["high", "low"]
PUBLISHED_FILE = "magcache_wan22.json"
PUBLISHED = {"t2v": "wan2.2-t2v-a14b", "m2v": "wan2.2-i2v-a14b"}  # M2V shots run the I2V experts
CALIBRATION_FORMAT = "storymem-magcache-curves/1"
# diffusers only ends (and prints) a calibration when a step count is reached; ours ends with the shot.
_NEVER = 1 << 30


class Curve(BaseModel):
    """One trajectory's magnitude ratios (one per step; the first step has none and is 1.0), the step
    at which the low-noise expert took over, and how to cache with it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    steps: int = Field(ge=2)
    high_steps: int = Field(ge=0)  # steps [0, high_steps) ran the high-noise expert
    cond: list[float]
    uncond: list[float]
    retention: float = Field(ge=0, lt=1)  # the authors' fraction of each expert's first steps never skipped
    experts: tuple[Expert, ...] = ("high", "low")  # which experts skip steps
    shots: int = 0  # calibrated: how many shots were averaged (0: published)

    def expert_ratios(self, expert: Expert, steps: int) -> list[float]:
        """The expert's slice of the curve, stretched or shrunk to the ``steps`` it runs for this shot."""
        part = self.cond[: self.high_steps] if expert == "high" else self.cond[self.high_steps :]
        return nearest_interp(part, steps) if part else [1.0] * steps


def nearest_interp(values: list[float], length: int) -> list[float]:
    """``values`` resampled to ``length`` by nearest neighbour (the authors' and diffusers' rule)."""
    if length <= 0:
        return []
    if length == 1:
        return [values[-1]]
    scale = (len(values) - 1) / (length - 1)
    return [values[round(i * scale)] for i in range(length)]


def published_curves() -> dict[Kind, Curve]:
    """The authors' curves for the T2V (first shot) and I2V (memory shots) experts, with their defaults."""
    data = json.loads(resources.files("storymem_cli.data").joinpath(PUBLISHED_FILE).read_text(encoding="utf-8"))
    curves: dict[Kind, Curve] = {}
    for kind, name in PUBLISHED.items():
        entry = data["curves"][name]
        ratios = [1.0, 1.0, *entry["ratios_cond_uncond"]]  # the authors' padding for the first step
        curves[kind] = Curve(  # type: ignore[index]
            source=f"{name}: {data['source']}",
            steps=entry["calibrated_at"]["steps"],
            high_steps=entry["calibrated_at"]["high_steps"],
            cond=ratios[0::2],
            uncond=ratios[1::2],
            retention=entry["defaults"]["retention"],
            experts=tuple(entry["defaults"]["experts"]),
        )
    return curves


def load_curves(path: Path | None) -> dict[Kind, Curve]:
    """The curves a render uses: a calibration file's where it has one for a pair, else the published."""
    curves = published_curves()
    if path is None:
        return curves
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        if found != CALIBRATION_FORMAT:
            raise ValueError(f"format is {found!r}, not {CALIBRATION_FORMAT!r}")
        for kind, entry in data["curves"].items():
            if kind not in PUBLISHED:
                raise ValueError(f"unknown pair {kind!r} (t2v or m2v)")
            curves[kind] = Curve(**{"retention": curves[kind].retention, "experts": curves[kind].experts, **entry})
    except (OSError, ValueError, KeyError, TypeError, ValidationError) as err:
        raise InvalidInputError(
            f"--magcache-curve {path}: not a MagCache calibration file ({err})",
            hint="write one with: storymem render STORY --magcache-calibrate FILE",
        ) from None
    return curves


def split_steps(sampling: SamplingConfig) -> tuple[int, int]:
    """(high-noise, low-noise) steps of one shot: the scheduler's timesteps against the boundary, as the
    pipelines switch experts (``t >= boundary * 1000`` runs the high-noise expert)."""
    from storymem_cli.pipeline.sigmas import NUM_TRAIN_TIMESTEPS, base_sigmas, shift_sigmas

    sigmas = shift_sigmas(base_sigmas(sampling.steps, sampling.release_sigmas), sampling.flow_shift)
    high = int((sigmas * NUM_TRAIN_TIMESTEPS >= sampling.boundary_ratio * NUM_TRAIN_TIMESTEPS).sum())
    return high, sampling.steps - high


def skip_schedule(ratios: list[float], threshold: float, k: int, retention: float) -> list[bool]:
    """Which of an expert's steps MagCache skips (True), exactly as diffusers' ``MagCacheHeadHook``
    decides: after the first ``retention`` of the steps, accumulate the ratio product's distance from
    1; skip while it stays within ``threshold`` and at most ``k`` steps in a row, else compute and
    start again. The first step always computes (nothing cached yet)."""
    steps = len(ratios)
    retained = int(retention * steps + 0.5)
    product, error, run = 1.0, 0.0, 0
    skips: list[bool] = []
    for step, ratio in enumerate(ratios):
        skip = False
        if step >= retained:
            product *= ratio
            run += 1
            error += abs(1.0 - product)
            skip = step > 0 and error <= threshold and run <= k
            if not skip:
                product, error, run = 1.0, 0.0, 0
        skips.append(skip)
    return skips


class ExpertPlan(BaseModel):
    """One expert's MagCache settings for one shot."""

    model_config = ConfigDict(frozen=True)

    steps: int
    ratios: list[float]
    threshold: float
    k: int  # 0: this expert never skips
    retention: float

    def skips(self) -> list[bool]:
        return skip_schedule(self.ratios, self.threshold, self.k, self.retention)


EXPERTS: dict[str, tuple[Expert, ...]] = {"low": ("low",), "both": ("high", "low")}


def shot_plan(curve: Curve, sampling: SamplingConfig, threshold: float, k: int,
              retention: float | None = None, experts: str = "auto") -> dict[Expert, ExpertPlan]:  # fmt: skip
    """Each expert's steps, ratios and settings for a shot sampled with ``sampling``; ``experts``:
    which skip steps (auto: the curve's, i.e. the authors' choice)."""
    counts = dict(zip(("high", "low"), split_steps(sampling), strict=True))
    retained = curve.retention if retention is None else retention
    skipping = EXPERTS.get(experts, curve.experts)
    return {
        expert: ExpertPlan(steps=n, ratios=curve.expert_ratios(expert, n), threshold=threshold,
                           k=k if expert in skipping else 0, retention=retained)  # fmt: skip
        for expert, n in counts.items()  # type: ignore[misc]
    }


def skipped_steps(plan: dict[Expert, ExpertPlan]) -> dict[Expert, int]:
    return {expert: sum(p.skips()) for expert, p in plan.items()}


# -- the hooks ---------------------------------------------------------------------------------------


def placeholder_config(runtime: RuntimeOptions) -> Any:
    """The ``MagCacheConfig`` an expert is given at load; :meth:`MagCacheRun.before_shot` fills in its
    steps and ratios for every shot (the hooks hold this object, so a change reaches them all)."""
    from diffusers import MagCacheConfig

    if runtime.magcache_calibrate is not None:
        return MagCacheConfig(calibrate=True, num_inference_steps=_NEVER)
    return MagCacheConfig(threshold=runtime.magcache_threshold, max_skip_steps=runtime.magcache_k,
                          num_inference_steps=1, mag_ratios=[1.0])  # fmt: skip


def compile_beneath_hooks(transformer: Any) -> None:
    """``--compile`` with MagCache: compile each block's own forward before the hooks wrap it. diffusers'
    MagCache hooks are ``torch.compiler.disable``d and wrap every block, so compiling the hooked blocks
    (``compile_repeated_blocks``) compiled nothing; a compiled function called from inside them runs
    compiled. One compiled function for every block: they share its graphs."""
    import types

    import torch

    block_type = type(transformer.blocks[0])
    compiled = torch.compile(block_type.forward, dynamic=True)  # the memory length changes from shot to shot
    for block in transformer.blocks:
        block.forward = types.MethodType(compiled, block)


def _state_manager(transformer: Any) -> Any:
    from diffusers.hooks import HookRegistry
    from diffusers.hooks.mag_cache import _MAG_CACHE_LEADER_BLOCK_HOOK

    hook = HookRegistry.check_if_exists_or_initialize(transformer.blocks[0]).get_hook(_MAG_CACHE_LEADER_BLOCK_HOOK)
    return None if hook is None else hook.state_manager


def computed_probe(transformer: Any) -> Any:
    """With MagCache on ``transformer``: a function telling, right after a forward (still inside its
    cache context), whether that forward computed its blocks; None without MagCache. (A hook inside the
    blocks cannot tell under --compile: the blocks' own forward is compiled there.)"""
    if type(getattr(transformer, "_cache_config", None)).__name__ != "MagCacheConfig":
        return None
    manager = _state_manager(transformer)
    return lambda: manager.get_state().should_compute


class MagCacheRun:
    """``--cache magcache`` across one model's shots: each shot's per-expert configs, and with
    ``--magcache-calibrate`` the ratios measured so far, written after every shot."""

    def __init__(self, runtime: RuntimeOptions):
        self.runtime = runtime
        self.curves = load_curves(runtime.magcache_curve)
        self.measured: dict[Kind, list[ShotRatios]] = {"t2v": [], "m2v": []}
        self.sampling: dict[Kind, SamplingConfig] = {}
        self.last: dict[str, Any] | None = None

    def before_shot(self, kind: Kind, experts: tuple[Any, Any], sampling: SamplingConfig) -> None:
        import torch

        self.sampling[kind] = sampling
        if self.runtime.magcache_calibrate is not None:
            return
        runtime = self.runtime
        plan = shot_plan(self.curves[kind], sampling, runtime.magcache_threshold, runtime.magcache_k,
                         runtime.magcache_retention, runtime.magcache_experts)  # fmt: skip
        for transformer, expert in zip(experts, ("high", "low"), strict=True):
            config, part = transformer._cache_config, plan[expert]  # type: ignore[index]
            config.num_inference_steps = max(part.steps, 1)
            config.mag_ratios = torch.tensor(part.ratios or [1.0])
            config.threshold, config.max_skip_steps, config.retention_ratio = part.threshold, part.k, part.retention
        self.last = {"kind": kind, "skipped_steps": skipped_steps(plan), "steps": {e: p.steps for e, p in plan.items()}}

    def describe(self) -> dict[str, Any]:
        """For run.json: the settings, where each pair's curve came from, and the last shot's plan."""
        runtime = self.runtime
        if runtime.magcache_calibrate is not None:
            return {"cache": runtime.cache, "magcache_calibrate": str(runtime.magcache_calibrate),
                    "shots_calibrated": {kind: len(shots) for kind, shots in self.measured.items()}}  # fmt: skip
        return {
            **runtime.model_dump(mode="json", include={"cache", "magcache_threshold", "magcache_k", "magcache_retention",
                                                       "magcache_experts", "magcache_curve"}),  # fmt: skip
            "curves": {kind: {"source": c.source, "retention": c.retention, "experts": list(c.experts), "shots": c.shots}
                       for kind, c in self.curves.items()},  # fmt: skip
            "last_shot": self.last,
        }

    def after_shot(self, kind: Kind, experts: tuple[Any, Any]) -> None:
        """Calibrating: keep this shot's ratios (each expert, each of its cond/uncond calls) and write
        the mean curve so far."""
        if self.runtime.magcache_calibrate is None:
            return
        measured = ShotRatios()
        for expert, transformer in zip(("high", "low"), experts, strict=True):
            states = _state_manager(transformer)._state_cache  # per call name: "cond", "uncond"
            cond = list(states["cond"].calibration_ratios) if "cond" in states else []
            uncond = list(states["uncond"].calibration_ratios) if "uncond" in states else cond  # guidance 1
            measured.cond += cond
            measured.uncond += uncond
            if expert == "high":
                measured.high_steps = len(cond)
        self.measured[kind].append(measured)
        write_calibration(Path(self.runtime.magcache_calibrate), self.measured, self.sampling)


@dataclass
class ShotRatios:
    """The ratios one shot measured: its whole trajectory, the high-noise expert's steps first."""

    cond: list[float] = field(default_factory=list)
    uncond: list[float] = field(default_factory=list)
    high_steps: int = 0


def mean_curve(shots: list[ShotRatios], sampling: SamplingConfig) -> dict[str, Any]:
    """The element-wise mean of the shots' ratios (shots of one pair share steps and expert split)."""
    length = min(len(shot.cond) for shot in shots)

    def mean(key: str) -> list[float]:
        return [round(sum(getattr(shot, key)[i] for shot in shots) / len(shots), 5) for i in range(length)]

    return {
        "source": f"calibrated: {len(shots)} shot(s), flow shift {sampling.flow_shift:g}, boundary {sampling.boundary_ratio:g}",
        "steps": length, "high_steps": shots[0].high_steps, "cond": mean("cond"), "uncond": mean("uncond"),
        "shots": len(shots),
    }  # fmt: skip


def write_calibration(path: Path, measured: dict[Kind, list[ShotRatios]], sampling: dict[Kind, SamplingConfig]) -> None:
    """Atomically: a half-written file must not be taken for a curve."""
    curves = {kind: mean_curve(shots, sampling[kind]) for kind, shots in measured.items() if shots}
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps({"format": CALIBRATION_FORMAT, "curves": curves}, indent=1), encoding="utf-8")
    temporary.replace(path)


def story_skipped_work(threshold: float, k: int, experts: str = "auto", shots: int = 10, retention: float | None = None,
                       curves: dict[Kind, Curve] | None = None) -> float:  # fmt: skip
    """The share of a paper-setting story's expert-forward FLOPs MagCache skips (computed from the curves):
    a T2V first shot, then memory shots whose memory grows by 3 keyframes a shot up to 10
    (render.story_cost), 40 steps each, both passes of every step alike."""
    from storymem_cli.config import M2V_SAMPLING, T2V_SAMPLING
    from storymem_cli.render.story_cost import flops, memory_growth, shot_tokens

    curves = curves or published_curves()
    total = skipped = 0.0
    for shot, memory in enumerate(memory_growth(shots)):
        kind: Kind = "t2v" if shot == 0 else "m2v"
        sampling = T2V_SAMPLING if kind == "t2v" else M2V_SAMPLING
        plan = shot_plan(curves[kind], sampling, threshold, k, retention, experts)
        work = flops(shot_tokens(832, 480, 81, memory))
        total += work
        skipped += work * sum(skipped_steps(plan).values()) / sampling.steps
    return skipped / total
