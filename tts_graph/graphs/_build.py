"""How every graph factory builds its graph: a checked schema, a start node, a chain of steps,
and LangGraph's policies on the steps that call a model.

A factory writes its strategy as a chain::

    steps = Steps("create_x_graph", state_schema, keys, policies)
    steps.model("sample", make_fanout_node(...))    # calls a model: retry, timeout, cache
    steps.step("select", make_select_node(...))     # pure computation
    return steps.done()
"""

from __future__ import annotations

import dataclasses
import functools
import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import CachePolicy, RetryPolicy, TimeoutPolicy

from tts_graph.backends.base import Backend
from tts_graph.errors import BackendError, ConfigError, check_count
from tts_graph.graphs._compose import make_graph_node
from tts_graph.graphs._schema import check_schema
from tts_graph.nodes._node import read_state
from tts_graph.nodes.fanout import make_fanout_node
from tts_graph.nodes.start import make_start_node
from tts_graph.state import StateKeys
from tts_graph.tracing import strategy_metadata

__all__ = ["DEFAULT_RETRY", "Policies", "Steps", "retryable"]


def retryable(exc: BaseException) -> bool:
    """Whether a node that failed with ``exc`` may succeed if run again: a backend failure the
    server may recover from (connection refused while it restarts, 5xx, 429), after the
    backend's own retries of the single request gave up."""
    return isinstance(exc, BackendError) and exc.retryable


# LangGraph's own key pickles the whole state, the run's live ledger (and its lock) included.
_DEFAULT_KEY: Callable[..., Any] = CachePolicy().key_func

DEFAULT_RETRY = RetryPolicy(max_attempts=3, initial_interval=1.0, retry_on=retryable)


@dataclass(frozen=True)
class Policies:
    """LangGraph policies for the nodes of a graph that call a model.

    - ``retry``: rerun a node whose backend failed in a way that may pass (default: up to 3
      attempts on retryable :class:`~tts_graph.errors.BackendError`; the backend already
      retries each request, so this covers a server that is down for longer, e.g.
      restarting). The rerun's requests are charged again: the server did the work twice.
    - ``timeout``: seconds (or a ``TimeoutPolicy``) per node attempt; a node past it fails
      with LangGraph's ``NodeTimeoutError``. For a limit that finishes with the best answer so
      far instead, use ``Budget(max_wall_s=...)``.
    - ``cache``: a ``CachePolicy`` for compiling with ``cache=`` (e.g. ``InMemoryCache()``):
      a node given the same state again returns its earlier result without calling the
      model. Requests carry explicit seeds (candidate ``i`` gets ``seed + i``), so a cached
      result is the one the server would give again, and per-candidate branches carry their
      index and seed, so identical prompts do not collapse into one sample.

    >>> from langgraph.cache.memory import InMemoryCache
    >>> graph = create_best_of_n_graph(backend, policies=Policies(cache=CachePolicy()))  # doctest: +SKIP
    >>> graph.compile(cache=InMemoryCache())  # doctest: +SKIP
    """

    retry: RetryPolicy | None = DEFAULT_RETRY
    timeout: float | TimeoutPolicy | None = None
    cache: CachePolicy[Any] | None = None


def cache_key(keys: StateKeys, state: Any) -> bytes:
    """What a model node's result depends on: the question or conversation (by role and
    content), the reference, the budget and the candidates so far (by index, text and answer).
    Not the run's live accounting (ledger, usage, decisions), nor ids that are new each run. (A
    candidate's ``Send`` branch adds its index and seed: see :mod:`tts_graph.nodes.send`.)"""
    view = read_state(state)
    messages = [(m.type, m.content) for m in view.get(keys.messages) or ()]
    candidates = [(c.index, c.text, c.answer) for c in view.get(keys.candidates) or ()]
    budget = view.get(keys.budget)
    return pickle.dumps(
        (
            view.get(keys.question), messages, repr(view.get(keys.reference)),
            None if budget is None else budget.model_dump_json(), candidates,
        ),
        protocol=5,
    )  # fmt: skip


class Steps:
    """A strategy's graph under construction: ``START → start → step → ... → END``."""

    def __init__(
        self,
        factory: str,
        state_schema: Any,
        keys: StateKeys,
        policies: Policies | None = None,
        *,
        writes: Iterable[str] = (),
    ) -> None:
        check_schema(state_schema, keys, factory, writes=writes)
        self.policies = policies or Policies()
        self.keys = keys
        # The strategy is named on every node's run (and, from there, on the whole trace), so
        # LangSmith can filter and sum cost by strategy.
        self.strategy = factory.removeprefix("create_").removesuffix("_graph")
        self.metadata = strategy_metadata(self.strategy)
        self.builder: StateGraph[Any] = StateGraph(state_schema)
        self.builder.add_node("start", make_start_node(keys=keys), metadata=self.metadata)
        self.builder.add_edge(START, "start")
        self.last = "start"

    def model(self, name: str, node: Any, *, error_handler: Any = None) -> Steps:
        """Add ``node``, which calls a model, with the policies, after the last step."""
        self.builder.add_node(name, node, error_handler=error_handler, **self.model_options())
        return self._chain(name)

    def model_options(self) -> dict[str, Any]:
        """``add_node`` options of a node that calls a model (for nodes added elsewhere)."""
        p = self.policies
        cache = p.cache
        if cache is not None and cache.key_func is _DEFAULT_KEY:
            cache = dataclasses.replace(cache, key_func=functools.partial(cache_key, self.keys))
        return {"retry_policy": p.retry, "timeout": p.timeout, "cache_policy": cache,
                "metadata": self.metadata}  # fmt: skip

    def sample(
        self, backend: Backend | None, candidates: Any, *, runs: int, **fanout: Any
    ) -> Steps:
        """The step that makes the candidates, named ``fanout``: ``runs`` runs of the graph
        ``candidates`` when one is given, else one ``n``-sample request to ``backend``
        (``fanout`` holds :func:`~tts_graph.nodes.fanout.make_fanout_node`'s options)."""
        check_count("n", fanout.get("n", runs))  # the strategy's own name for the count
        if candidates is not None:
            node = make_graph_node(
                candidates, result="candidates", runs=runs, keys=self.keys, name="fanout"
            )
            return self.step("fanout", node)
        if backend is None:
            raise ConfigError(
                f"create_{self.strategy}_graph needs a backend, or candidates= a graph to run"
            )
        return self.model("fanout", make_fanout_node(backend, keys=self.keys, **fanout))

    def step(self, name: str, node: Any, *, error_handler: Any = None) -> Steps:
        """Add ``node``, which calls no model, after the last step."""
        self.builder.add_node(name, node, error_handler=error_handler, metadata=self.metadata)
        return self._chain(name)

    def _chain(self, name: str) -> Steps:
        self.builder.add_edge(self.last, name)
        self.last = name
        return self

    def done(self) -> StateGraph[Any]:
        self.builder.add_edge(self.last, END)
        return self.builder
