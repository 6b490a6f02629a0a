"""LangGraph nodes, each made by a ``make_<role>_node`` factory (``add_send_fanout`` wires the
per-candidate fan-out's parts into a graph). Every node is a runnable that ``add_node`` takes,
reads dict, pydantic and dataclass state, and works on a conversation (``messages``) as well as
on a ``question``."""

from tts_graph.nodes.confidence import make_confidence_node
from tts_graph.nodes.consistency import make_consistency_node, prob_top_stays_on_top
from tts_graph.nodes.difficulty import DifficultyBins, make_difficulty_node
from tts_graph.nodes.fanout import make_fanout_node
from tts_graph.nodes.forcing import ThinkingMarkers, make_budget_forcing_node
from tts_graph.nodes.revision import make_self_refine_node
from tts_graph.nodes.search import SearchMode, make_step_search_node
from tts_graph.nodes.select import majority_vote, make_select_node, register_selector
from tts_graph.nodes.send import Branch, add_send_fanout
from tts_graph.nodes.start import make_start_node
from tts_graph.nodes.thinking import make_thinking_node
from tts_graph.nodes.tournament import make_tournament_node
from tts_graph.nodes.verify import make_verify_node

__all__ = [
    "Branch",
    "DifficultyBins",
    "SearchMode",
    "ThinkingMarkers",
    "add_send_fanout",
    "majority_vote",
    "make_budget_forcing_node",
    "make_confidence_node",
    "make_consistency_node",
    "make_difficulty_node",
    "make_fanout_node",
    "make_select_node",
    "make_self_refine_node",
    "make_start_node",
    "make_step_search_node",
    "make_thinking_node",
    "make_tournament_node",
    "make_verify_node",
    "prob_top_stays_on_top",
    "register_selector",
]
