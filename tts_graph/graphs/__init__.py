"""Ready-made graphs, one module per strategy; each factory returns an uncompiled StateGraph."""

from tts_graph.graphs.best_of_n import create_best_of_n_graph

__all__ = ["create_best_of_n_graph"]
