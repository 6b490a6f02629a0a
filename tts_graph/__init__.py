"""tts_graph: test-time scaling for LangGraph.

Spend more inference compute on the prompts that need it, inside the graphs you already have:
nodes (fan-out, selection, ...), verifiers, ready-made graphs and a budget carried in state,
served by vLLM.

>>> from tts_graph import VLLMBackend, create_best_of_n_graph
>>> graph = create_best_of_n_graph(VLLMBackend("http://127.0.0.1:8000/v1"), n=8).compile()
"""

from tts_graph.backends import (
    Backend,
    Completion,
    Generation,
    GenerationRequest,
    SamplingParams,
    ServerConfig,
    VLLMBackend,
    VLLMServer,
)
from tts_graph.budget import Budget, Usage
from tts_graph.errors import (
    BackendError,
    BudgetExhausted,
    ConfigError,
    EngineDeadError,
    ServerStartError,
    TTSGraphError,
)
from tts_graph.graphs import create_best_of_n_graph
from tts_graph.nodes import (
    Branch,
    DifficultyBins,
    ThinkingMarkers,
    add_send_fanout,
    make_budget_forcing_node,
    make_consistency_node,
    make_difficulty_node,
    make_fanout_node,
    make_select_node,
    make_self_refine_node,
    make_thinking_node,
    make_tournament_node,
    make_verify_node,
)
from tts_graph.state import Candidate, StateKeys, TTSState
from tts_graph.verifiers import Problem, Verdict, Verifier

__all__ = [
    "Backend",
    "BackendError",
    "Branch",
    "Budget",
    "BudgetExhausted",
    "Candidate",
    "Completion",
    "ConfigError",
    "DifficultyBins",
    "EngineDeadError",
    "Generation",
    "GenerationRequest",
    "Problem",
    "SamplingParams",
    "ServerConfig",
    "ServerStartError",
    "StateKeys",
    "TTSGraphError",
    "TTSState",
    "ThinkingMarkers",
    "Usage",
    "VLLMBackend",
    "VLLMServer",
    "Verdict",
    "Verifier",
    "add_send_fanout",
    "create_best_of_n_graph",
    "make_budget_forcing_node",
    "make_consistency_node",
    "make_difficulty_node",
    "make_fanout_node",
    "make_select_node",
    "make_self_refine_node",
    "make_thinking_node",
    "make_tournament_node",
    "make_verify_node",
]

__version__ = "0.1.0"
