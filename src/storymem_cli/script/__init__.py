"""Story scripts: the ST-Bench JSON format (plus references and per-shot seeds), validated.

``load_script(path)`` is the one way in; see ``model.py`` for the format.
"""

from storymem_cli.script.loader import load_script
from storymem_cli.script.model import Reference, Scene, Shot, StoryScript
from storymem_cli.script.problems import ScriptError, ScriptProblem

__all__ = ["Reference", "Scene", "ScriptError", "ScriptProblem", "Shot", "StoryScript", "load_script"]
