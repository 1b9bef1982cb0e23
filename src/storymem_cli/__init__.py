"""storymem: multi-shot story videos with a keyframe memory (StoryMem, on diffusers Wan2.2)."""

__version__ = "0.1.0"
