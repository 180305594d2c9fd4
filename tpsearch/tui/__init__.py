"""The interactive search screen (`tpsearch query -i`), a Textual app.

A way in beside the CLI: it talks to the collection's API only (queries, passages, similar
passages), and its rendering helpers are pure functions in `preview.py`.
"""

from tpsearch.tui.app import SearchApp, editor_command

__all__ = ["SearchApp", "editor_command"]
