"""tts_graph: test-time scaling for LangGraph.

Spend more inference compute on the prompts that need it, inside the graphs you already have:
nodes (fan-out, selection, ...), verifiers, ready-made graphs and a budget carried in state,
served by vLLM.

>>> from tts_graph import VLLMBackend, create_best_of_n_graph
>>> graph = create_best_of_n_graph(VLLMBackend("http://127.0.0.1:8000/v1"), n=8).compile()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tts_graph._lazy import lazy_exports

if TYPE_CHECKING:
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
    from tts_graph.budget import (
        Budget,
        Usage,
    )
    from tts_graph.errors import (
        BackendError,
        BudgetExhausted,
        ConfigError,
        EngineDeadError,
        ServerStartError,
        TTSGraphError,
    )
    from tts_graph.graphs import (
        create_best_of_n_graph,
    )
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
    from tts_graph.state import (
        Candidate,
        StateKeys,
        TTSState,
    )
    from tts_graph.verifiers import (
        Problem,
        Verdict,
        Verifier,
    )

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

# Names are imported on first use, so `import tts_graph.verifiers.math` (e.g. in a worker
# process) does not pay for langgraph and openai.
_LAZY = {
    "Backend": "tts_graph.backends",
    "BackendError": "tts_graph.errors",
    "Branch": "tts_graph.nodes",
    "Budget": "tts_graph.budget",
    "BudgetExhausted": "tts_graph.errors",
    "Candidate": "tts_graph.state",
    "Completion": "tts_graph.backends",
    "ConfigError": "tts_graph.errors",
    "DifficultyBins": "tts_graph.nodes",
    "EngineDeadError": "tts_graph.errors",
    "Generation": "tts_graph.backends",
    "GenerationRequest": "tts_graph.backends",
    "Problem": "tts_graph.verifiers",
    "SamplingParams": "tts_graph.backends",
    "ServerConfig": "tts_graph.backends",
    "ServerStartError": "tts_graph.errors",
    "StateKeys": "tts_graph.state",
    "TTSGraphError": "tts_graph.errors",
    "TTSState": "tts_graph.state",
    "ThinkingMarkers": "tts_graph.nodes",
    "Usage": "tts_graph.budget",
    "VLLMBackend": "tts_graph.backends",
    "VLLMServer": "tts_graph.backends",
    "Verdict": "tts_graph.verifiers",
    "Verifier": "tts_graph.verifiers",
    "add_send_fanout": "tts_graph.nodes",
    "create_best_of_n_graph": "tts_graph.graphs",
    "make_budget_forcing_node": "tts_graph.nodes",
    "make_consistency_node": "tts_graph.nodes",
    "make_difficulty_node": "tts_graph.nodes",
    "make_fanout_node": "tts_graph.nodes",
    "make_select_node": "tts_graph.nodes",
    "make_self_refine_node": "tts_graph.nodes",
    "make_thinking_node": "tts_graph.nodes",
    "make_tournament_node": "tts_graph.nodes",
    "make_verify_node": "tts_graph.nodes",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
