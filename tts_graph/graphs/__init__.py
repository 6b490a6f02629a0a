"""Ready-made graphs, one module per strategy; each ``create_<strategy>_graph`` factory returns an
uncompiled ``StateGraph`` to compile, extend, or nest in another graph (``candidates=``, routes)."""

from tts_graph.graphs._build import Policies
from tts_graph.graphs._compose import make_graph_node
from tts_graph.graphs.adaptive import VOTE, create_adaptive_graph, default_routes
from tts_graph.graphs.best_of_n import create_best_of_n_graph
from tts_graph.graphs.budget_forcing import create_budget_forcing_graph
from tts_graph.graphs.confidence import create_confidence_graph
from tts_graph.graphs.pool import create_pool_graph
from tts_graph.graphs.search import create_beam_search_graph, create_dvts_graph
from tts_graph.graphs.self_consistency import create_self_consistency_graph
from tts_graph.graphs.self_refine import create_self_refine_graph
from tts_graph.graphs.tournament import create_tournament_graph

__all__ = [
    "VOTE",
    "Policies",
    "create_adaptive_graph",
    "create_beam_search_graph",
    "create_best_of_n_graph",
    "create_budget_forcing_graph",
    "create_confidence_graph",
    "create_dvts_graph",
    "create_pool_graph",
    "create_self_consistency_graph",
    "create_self_refine_graph",
    "create_tournament_graph",
    "default_routes",
    "make_graph_node",
]
