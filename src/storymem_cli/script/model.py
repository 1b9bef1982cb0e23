"""The story-script format (ST-Bench's JSON, plus optional references and per-shot seeds) as
pydantic models, and the flat list of shots everything downstream works on.

Build scripts with :func:`storymem_cli.script.load_script`: it reads the file, collects every
problem with its JSON path, and checks reference images. ``StoryScript.model_validate`` on
its own checks types and the cross-field rules but reports only a summary.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from storymem_cli.errors import InvalidInputError
from storymem_cli.script.rules import story_problems

SEED_MAX = 2**32 - 1  # numpy and every torch backend accept seeds in [0, 2**32)
FINGERPRINT_VERSION = 1  # bump when what a shot fingerprint covers changes: old runs re-render

Text = Annotated[StrictStr, Field(pattern=r"\S")]  # a string with at least one visible character
Seed = Annotated[StrictInt, Field(ge=0, le=SEED_MAX)]


class _Strict(BaseModel):
    # Strict: "1" is not a scene number and "yes" is not a cut flag. Unknown keys are errors,
    # so a typo (`vidoe_prompts`) cannot silently drop a field.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Reference(_Strict):
    """An image of a character, object or place that every shot is conditioned on."""

    image: Path = Field(description="Path of the image (PNG or JPEG), relative to the script's folder or absolute.")
    name: Text = Field(description="Short name of what the image shows, e.g. the character's name.")

    @field_validator("image")
    @classmethod
    def _resolve(cls, value: Path, info: ValidationInfo) -> Path:
        return _resolve_image(value, info)


def _resolve_image(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir") or Path.cwd()
    path = Path(base) / value.expanduser()
    try:
        return path.resolve()
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte: the loader names it
        return path.absolute()


class Character(_Strict):
    """Someone the memory knows by name: shots whose prompt names them (by name or alias, whole
    words, any case) are tagged with them, and retrieve their references and keyframes first."""

    name: Text = Field(description="The character's name, as prompts write it, e.g. \"Mia\".")
    aliases: list[Text] = Field(
        default_factory=list,
        description="Other words prompts use for the character: roles or looks (\"the girl\", \"red coat\"), "
        "never pronouns. Whole words, any case.",
    )
    references: list[Path] = Field(
        default_factory=list,
        description="Images of the character (PNG or JPEG), relative to the script's folder: pinned in memory "
        "and tagged with the character.",
    )
    description: Text | None = Field(
        default=None,
        description="What the character looks like; `storymem render --describe-characters` appends it to "
        "every prompt that names the character.",
    )

    @field_validator("references")
    @classmethod
    def _resolve(cls, value: list[Path], info: ValidationInfo) -> list[Path]:
        return [_resolve_image(path, info) for path in value]


class Scene(_Strict):
    """One scene: consecutive shots sharing a setting. The lists are parallel, one entry per shot."""

    scene_num: StrictInt = Field(description="Scene number; scenes are numbered in increasing order.")
    video_prompts: list[Text] = Field(
        min_length=1,
        description="One prompt per shot: one or two sentences (subject, action, setting, camera).",
    )
    first_frame_prompt: list[Text] | None = Field(
        default=None,
        description="Optional, one per shot: the first frame described as an image "
        "(used only by two-stage keyframe baselines).",
    )
    cut: list[StrictBool] = Field(
        default_factory=list,
        description="One per shot: true = hard cut (new camera set-up); false = the shot continues "
        "from the end of the previous one. The story's first shot must be true. "
        "Absent: every shot of the scene is a cut.",
    )
    seeds: list[Seed | None] | None = Field(
        default=None,
        description="Optional, one per shot: a fixed seed for that shot (0..4294967295), "
        "or null to derive it from the run's seed.",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_cuts(cls, data: Any) -> Any:
        # The release treats a missing list as "all cuts"; the loader warns about it.
        if isinstance(data, dict) and "cut" not in data and isinstance(data.get("video_prompts"), list):
            return {**data, "cut": [True] * len(data["video_prompts"])}
        return data


class Shot(_Strict):
    """One shot of the story, flattened out of its scene."""

    index: int  # 0-based over the whole story
    scene: int  # the scene's scene_num
    index_in_scene: int  # 0-based
    prompt: str
    cut: bool
    first_frame_prompt: str | None
    seed: int | None  # per-shot override; None = derive from the run's seed


class StoryScript(_Strict):
    """A story script: ST-Bench's format, plus optional ``references`` and per-shot ``seeds``."""

    model_config = ConfigDict(
        title="storymem story script",
        json_schema_extra={
            "description": "A story for `storymem render`: scenes of shots, one prompt per shot, "
            "with cut flags (ST-Bench format). Comments and trailing commas are allowed (JSON5)."
        },
    )

    story_name: Text = Field(description="Title of the story.")
    story_overview: StrictStr = Field(default="", description="A paragraph summarising the story.")
    scenes: list[Scene] = Field(min_length=1, description="The scenes, in order.")
    references: list[Reference] = Field(
        default_factory=list,
        description="Optional images (characters, objects, places) every shot is conditioned on.",
    )
    characters: list[Character] = Field(
        default_factory=list,
        description="Optional: the characters, so that memory knows who each shot shows "
        "(docs/memory.md, Characters).",
    )

    @model_serializer(mode="wrap")
    def _without_empty_characters(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A script without characters dumps, hashes and fingerprints exactly as before they existed.
        data = handler(self)
        if isinstance(data, dict) and not data.get("characters"):
            data.pop("characters", None)
        return data

    @model_validator(mode="after")
    def _cross_field_rules(self) -> StoryScript:
        problems = story_problems(self.model_dump(mode="json"))
        if problems:
            # A custom type, so the loader can skip it: it reports the same rules per JSON path.
            raise PydanticCustomError("script_rules", "{problems}", {"problems": "; ".join(str(p) for p in problems)})
        return self

    # Plain properties, not cached: model_copy(update=...) copies the instance dict, so a
    # cache would survive an edit. Both are cheap for stories of tens of shots.
    @property
    def shots(self) -> list[Shot]:
        """Every shot of the story in order, with its global index."""
        shots: list[Shot] = []
        for scene in self.scenes:
            for j, prompt in enumerate(scene.video_prompts):
                shots.append(
                    Shot(
                        index=len(shots),
                        scene=scene.scene_num,
                        index_in_scene=j,
                        prompt=prompt,
                        cut=scene.cut[j],
                        first_frame_prompt=scene.first_frame_prompt[j] if scene.first_frame_prompt else None,
                        seed=scene.seeds[j] if scene.seeds else None,
                    )
                )
        return shots

    @property
    def continuations(self) -> int:
        """How many shots continue from the previous shot (cut = false)."""
        return sum(not shot.cut for shot in self.shots)

    def canonical_json(self) -> str:
        """The validated script as compact JSON with sorted keys (reference paths absolute):
        what a run folder stores as ``script.json``; ``load_script`` reads it back unchanged."""
        return _canonical(self.model_dump(mode="json"))

    def _reference_digests(self) -> list[dict[str, str]]:
        return [{"name": ref.name, "image_sha256": _file_sha256(ref.image)} for ref in self.references]

    def _character_digests(self) -> list[dict[str, Any]] | None:
        """The characters with their images by content; None without characters."""
        if not self.characters:
            return None
        return [
            {**c.model_dump(mode="json"), "references": [_file_sha256(path) for path in c.references]}
            for c in self.characters
        ]

    def named_characters(self, prompt: str) -> list[str]:
        """Names of the characters ``prompt`` names (whole words, any case), in declaration order."""
        from storymem_cli.script.characters import named_characters

        return named_characters(prompt, self.characters)

    def reference_images(self) -> list[TaggedReference]:
        """Every image the memory starts from: the script's references (tagged with the character
        whose name or alias they carry, if any), then each character's own references."""
        tagged = [TaggedReference(ref.image, ref.name, tuple(self.named_characters(ref.name))) for ref in self.references]
        for character in self.characters:
            tagged += [TaggedReference(path, character.name, (character.name,)) for path in character.references]
        return tagged

    @property
    def sha256(self) -> str:
        """Hash of the canonical JSON of the script. Comments, whitespace, key order, and where
        the files live do not change it: reference images count by their content, not their path."""
        data = self.model_dump(mode="json")
        data["references"] = self._reference_digests()
        if self.characters:
            data["characters"] = self._character_digests()
        return hashlib.sha256(_canonical(data).encode("utf-8")).hexdigest()

    def shot_fingerprint(self, index: int) -> str:
        """Stable hash of everything in the script that shot ``index``'s generation depends on:
        its prompt, cut flag, seed override, first-frame prompt, and the reference images.
        A renderer compares it with the stored one to find edited shots."""
        return _shot_fingerprint(self.shots[index], self._reference_digests(), self._character_digests())

    def shot_fingerprints(self) -> list[str]:
        """:meth:`shot_fingerprint` of every shot, building the shot list and hashing the
        reference images once (per shot, a story of n shots would cost n^2)."""
        references, characters = self._reference_digests(), self._character_digests()
        return [_shot_fingerprint(shot, references, characters) for shot in self.shots]


class TaggedReference(NamedTuple):
    """A reference image with the characters it shows."""

    image: Path
    name: str
    characters: tuple[str, ...]


def _shot_fingerprint(shot: Shot, references: list[dict[str, str]], characters: list[dict] | None = None) -> str:
    data = {
        "version": FINGERPRINT_VERSION,
        "prompt": shot.prompt,
        "cut": shot.cut,
        "seed": shot.seed,
        "first_frame_prompt": shot.first_frame_prompt,
        "references": references,
    }
    if characters is not None:  # absent without characters: fingerprints of earlier runs stay as they were
        data["characters"] = characters
    return hashlib.sha256(_canonical(data).encode("utf-8")).hexdigest()


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _file_sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as err:
        raise InvalidInputError(
            f"cannot read reference image {path}: {err.strerror or err}",
            hint="restore the file or remove it from the script's references",
        ) from None
