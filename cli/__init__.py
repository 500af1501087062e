"""The command groups of `python starter.py` (the entry point stays starter.py): health, and
the commands that start, signal or query workflows by name (what `celery call` and
`celery inspect` did)."""
