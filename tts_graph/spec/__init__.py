"""Declarative per-task graphs: a spec (YAML or JSON, checked by pydantic, with a shipped JSON
Schema) names the backend, the budget and the strategy; :func:`build_graph` makes it a graph and
:func:`worst_case` says what it may cost before anything runs.

>>> spec = load_spec({"strategy": {"kind": "best_of_n", "n": 4}})
>>> worst_case(spec, prompt_tokens=100).calls
1
"""

from tts_graph.spec.build import build_graph, make_backend
from tts_graph.spec.cost import Cost, worst_case
from tts_graph.spec.load import SpecError, SpecProblem, check_names, load_spec
from tts_graph.spec.models import Spec, StrategySpec

__all__ = [
    "Cost",
    "Spec",
    "SpecError",
    "SpecProblem",
    "StrategySpec",
    "build_graph",
    "check_names",
    "load_spec",
    "make_backend",
    "worst_case",
]
