"""tts_graph."""
