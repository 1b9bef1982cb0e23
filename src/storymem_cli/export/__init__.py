"""Export a run folder for editing: an OpenTimelineIO timeline (OTIO, CMX 3600 EDL, FCP 7 XML) of
the shot clips, and the shot prompts as subtitles (SRT) timed to story.mp4 (docs/run-folder.md,
"Export")."""
