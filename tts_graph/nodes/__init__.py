"""LangGraph nodes, each made by a ``make_<role>_node`` factory."""

from tts_graph.nodes.fanout import make_fanout_node
from tts_graph.nodes.select import majority_vote, make_select_node

__all__ = ["majority_vote", "make_fanout_node", "make_select_node"]
