"""The toy world: procedural clips, captions, stories, a rule-based detector and datasets (docs/toy-world.md)."""
