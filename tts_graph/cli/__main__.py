"""``python -m tts_graph.cli``: the ``tts-graph`` command."""

from tts_graph.cli import app

app()
