"""tts_graph: test-time scaling for LangGraph.

Spend more inference compute on the prompts that need it, inside the graphs and agents you
already have: ready-made graphs (``create_<strategy>_graph``), nodes (:mod:`tts_graph.nodes`),
verifiers (:mod:`tts_graph.verifiers`), a budget carried in state, and a chat model that scales,
served by vLLM.

>>> from tts_graph import VLLMBackend, create_best_of_n_graph
>>> graph = create_best_of_n_graph(VLLMBackend("http://127.0.0.1:8000/v1"), n=8).compile()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tts_graph._lazy import lazy_exports

if TYPE_CHECKING:
    from tts_graph.backends import SamplingParams, VLLMBackend
    from tts_graph.backends.chat_model import ChatModelBackend
    from tts_graph.budget import Budget, Usage
    from tts_graph.candidate import Candidate
    from tts_graph.errors import BackendError, BudgetExhausted, ConfigError, TTSGraphError
    from tts_graph.graphs import (
        create_adaptive_graph,
        create_beam_search_graph,
        create_best_of_n_graph,
        create_budget_forcing_graph,
        create_confidence_graph,
        create_dvts_graph,
        create_pool_graph,
        create_self_consistency_graph,
        create_self_refine_graph,
        create_tournament_graph,
    )
    from tts_graph.integrations.chat_model import TTSChatModel
    from tts_graph.state import (
        CandidatesDataclass,
        CandidatesModel,
        CandidatesState,
        ChatState,
        StateKeys,
        TTSState,
    )

__all__ = [
    "BackendError",
    "Budget",
    "BudgetExhausted",
    "Candidate",
    "CandidatesDataclass",
    "CandidatesModel",
    "CandidatesState",
    "ChatModelBackend",
    "ChatState",
    "ConfigError",
    "SamplingParams",
    "StateKeys",
    "TTSChatModel",
    "TTSGraphError",
    "TTSState",
    "Usage",
    "VLLMBackend",
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
]

__version__ = "0.1.0"

# Names are imported on first use, so `import tts_graph.verifiers.math` (e.g. in a worker
# process) does not pay for langgraph and openai.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "BackendError": "tts_graph.errors",
        "Budget": "tts_graph.budget",
        "BudgetExhausted": "tts_graph.errors",
        "Candidate": "tts_graph.candidate",
        "CandidatesDataclass": "tts_graph.state",
        "CandidatesModel": "tts_graph.state",
        "CandidatesState": "tts_graph.state",
        "ChatModelBackend": "tts_graph.backends.chat_model",
        "ChatState": "tts_graph.state",
        "ConfigError": "tts_graph.errors",
        "SamplingParams": "tts_graph.backends",
        "StateKeys": "tts_graph.state",
        "TTSChatModel": "tts_graph.integrations.chat_model",
        "TTSGraphError": "tts_graph.errors",
        "TTSState": "tts_graph.state",
        "Usage": "tts_graph.budget",
        "VLLMBackend": "tts_graph.backends",
        **{
            name: "tts_graph.graphs"
            for name in (
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
            )
        },
    },
)
