"""LangSmith traces that explain the answer: every model request, what it cost, and which
strategy and difficulty bin a run belonged to.

With LangSmith tracing on (``LANGSMITH_TRACING=true``), a graph's trace holds the graph's run,
one run per node with the node's decisions in its metadata (key ``tts_graph``), and, under each
node's run, one ``llm`` run per model request the node made, whichever backend sent it:

- inputs: the request's chat ``messages`` (or its raw ``prompt``);
- outputs: its samples as ``choices`` (text, tool calls, finish reason, token count) and its
  ``usage_metadata``;
- metadata: ``usage_metadata`` (``input_tokens``, ``output_tokens``, ``total_tokens``: the
  field LangSmith adds up into each node's and each trace's tokens and prices with
  ``ls_model_name`` and ``ls_provider``), the sampling parameters (``ls_temperature``,
  ``ls_max_tokens``, ``ls_stop``, all of them in ``ls_invocation_params``), what the budget cut
  (``tts_graph_budget``), and the node's own metadata (``langgraph_node``, ...), so tokens can
  be grouped by node;
- tags: those the node's run passes on to its children, plus ``nostream``, LangGraph's mark
  for model calls whose tokens are not streamed with ``stream_mode="messages"`` (only the
  chosen answer is).

A backend names its provider for LangSmith's prices with ``trace_metadata()`` (see
:meth:`~tts_graph.backends.base.BaseBackend.trace_metadata`).

Runs are tagged with what explains the trace: ``strategy:<name>`` on every run of a node added
with :func:`strategy_metadata`, and ``difficulty:<bin>`` once the difficulty node has binned
the question, each on the node's run and every run that contains it (the graph's run up to
the trace's root), with the same values under metadata keys ``tts_graph_strategy`` and
``tts_graph_difficulty``. A node inherits the labels of the runs that contain it, so the
nodes after the difficulty node (and nodes added without metadata, such as a ``Send``
fan-out's branches, once a labelled node has run) carry them too, as do their requests.
Filtering root runs by tag gives each trace's total cost per strategy or per bin; grouping
``llm`` runs by tag or by ``langgraph_node``, the cost per strategy, bin or node.

A graph factory names its strategy on every node it adds::

    metadata = strategy_metadata("best_of_n")
    builder.add_node("start", make_start_node(keys=keys), metadata=metadata)
    builder.add_node("fanout", make_fanout_node(backend, n=n, keys=keys), metadata=metadata)

:func:`redact_candidates` leaves candidate texts out of what is sent.

With tracing off a request pays one context-variable lookup; this module imports LangSmith
only when a run is being traced.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sys
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from tts_graph.errors import ConfigError

if TYPE_CHECKING:
    from langsmith import Client
    from langsmith.run_trees import RunTree

    from tts_graph.backends.base import (
        BaseBackend,
        Completion,
        Generation,
        GenerationRequest,
        StreamChunk,
    )
    from tts_graph.ledger import Grant
    from tts_graph.state import StateKeys

__all__ = [
    "DIFFICULTY_KEY",
    "NOSTREAM",
    "REDACTED",
    "STRATEGY_KEY",
    "USAGE_COUNTED_KEY",
    "hide_candidate_texts",
    "redact_candidates",
    "strategy_metadata",
    "tag_trace",
]

logger = logging.getLogger(__name__)

NOSTREAM = "nostream"
"""The tag of every request's ``llm`` run: LangGraph's ``TAG_NOSTREAM``, which keeps a model
call's tokens out of ``stream_mode="messages"``."""

STRATEGY_KEY = "tts_graph_strategy"
"""Run metadata key naming the strategy (set by :func:`strategy_metadata`)."""

DIFFICULTY_KEY = "tts_graph_difficulty"
"""Run metadata key holding the difficulty bin (set by the difficulty node)."""

USAGE_COUNTED_KEY = "tts_graph_usage_counted"
"""Run metadata key for a graph run whose requests' tokens a run outside it already counts,
as the run of a chat model that runs the graph does (it reports the graph's usage as its
own). Set ``{USAGE_COUNTED_KEY: True}`` in the graph's config metadata: its requests' ``llm``
runs then carry their usage under ``tts_graph_usage`` instead of ``usage_metadata``, which
LangSmith adds up, so each token is counted once."""

REDACTED = "[redacted]"
"""What a text left out of a trace reads as."""

_LABEL_PREFIX = "tts_graph_"
_DECISIONS_KEY = "tts_graph"  # the node run's decisions: the node's, not its requests'
_labels_lock = threading.Lock()
# Names given to tag_trace: the labels a node inherits from the runs that contain it.
_label_names: set[str] = {"strategy", "difficulty"}
T = TypeVar("T")


@dataclasses.dataclass
class _Settings:
    redact: bool = False
    response_keys: frozenset[str] = frozenset({"response"})
    client: Any = None  # the client redact_candidates installed


_settings = _Settings()


# -- the run being traced -------------------------------------------------------------------


def _current_run() -> RunTree | None:
    """The LangSmith run the caller is in, if it is being traced.

    Looked up in ``sys.modules`` so that a process that never imported LangSmith (nothing
    can be traced there) neither pays for importing it nor for a lookup.
    """
    helpers = sys.modules.get("langsmith.run_helpers")
    if helpers is None:
        return None
    run: RunTree | None = helpers.get_current_run_tree()
    if run is None or helpers.get_tracing_context()["enabled"] is False:
        return None
    return run


def _lineage(run: RunTree) -> Iterator[RunTree]:
    """``run`` and the runs that contain it, up to the trace's root.

    A run made by LangSmith knows its parent; a run made by LangChain's tracer knows only its
    parent's id, which the tracer's ``run_map`` (the runs in progress) resolves.
    """
    maps = _tracer_run_maps()
    seen: set[Any] = set()
    current: RunTree | None = run
    while current is not None and current.id not in seen:
        seen.add(current.id)
        yield current
        parent = current.parent_run
        if parent is None and current.parent_run_id is not None:
            key = str(current.parent_run_id)
            parent = next((m[key] for m in maps if key in m), None)
        current = parent


def _tracer_run_maps() -> list[Mapping[str, RunTree]]:
    from langchain_core.runnables.config import var_child_runnable_config
    from langchain_core.tracers.base import BaseTracer

    config = var_child_runnable_config.get() or {}
    callbacks = config.get("callbacks")
    handlers = callbacks if isinstance(callbacks, list) else getattr(callbacks, "handlers", [])
    return [h.run_map for h in handlers or () if isinstance(h, BaseTracer)]


def _inherited_tags(parent: RunTree) -> list[str]:
    """The tags a model call made here would inherit (LangChain's inheritable tags, not the
    parent's positional ones such as ``seq:step:1``), plus the labels on the parent."""
    from langchain_core.runnables.config import var_child_runnable_config

    config = var_child_runnable_config.get() or {}
    tags = list(config.get("tags") or ())
    with _labels_lock:
        labels = [t for t in parent.tags or () if _is_label(t)]
    return [*dict.fromkeys([*tags, *labels]), NOSTREAM]


def _is_label(tag: str) -> bool:
    name, colon, _ = tag.partition(":")
    return bool(colon) and name in _label_names


# -- tags -------------------------------------------------------------------------------------


def strategy_metadata(strategy: str) -> dict[str, str]:
    """Node metadata naming the strategy a node belongs to: pass it to ``add_node``.

    The node's runs, the ``llm`` runs of its requests and the runs that contain it (the
    graph's run, up to the trace's root) are tagged ``strategy:<strategy>`` and carry it under
    metadata key ``tts_graph_strategy``.

    >>> builder.add_node("fanout", make_fanout_node(backend, n=8),
    ...                  metadata=strategy_metadata("best_of_n"))  # doctest: +SKIP
    >>> strategy_metadata("best_of_n")
    {'tts_graph_strategy': 'best_of_n'}
    """
    if not isinstance(strategy, str) or not strategy:
        raise ConfigError(f"strategy must be a non-empty name, got {strategy!r}")
    return {STRATEGY_KEY: strategy}


def tag_trace(**labels: str | None) -> None:
    """Label the run being traced, and every run that contains it up to the trace's root:
    ``name=value`` becomes tag ``name:value`` and metadata ``tts_graph_<name>: value``. A
    label whose value is None is skipped; outside a traced run this does nothing.

    The runs that contain a node's run are still in progress, so what is added here is sent
    when each of them ends; the nodes that run after it in the same graph carry the label
    too, as do their requests' ``llm`` runs. The difficulty node calls
    ``tag_trace(difficulty=bin)``.

    >>> tag_trace(difficulty="hard")  # inside a node  # doctest: +SKIP
    """
    run = _current_run()
    if run is None:
        return
    given = {name: str(value) for name, value in labels.items() if value is not None}
    if given:
        _label(_lineage_of(run), given)


def label_node(config: Mapping[str, Any] | None) -> None:
    """Label a node's run as it starts (nothing to do when not tracing): with the labels the
    runs that contain it carry (the nearest one's value of each: a bin found earlier in the
    same graph), and with the strategy the node's metadata names, which also goes up to the
    runs that contain it."""
    run = _current_run()
    if run is None:
        return
    lineage = _lineage_of(run)
    inherited: dict[str, str] = {}
    with _labels_lock:
        for outer in lineage[1:]:
            for key, value in (outer.metadata or {}).items():
                name = key.removeprefix(_LABEL_PREFIX)
                if name in _label_names and isinstance(value, str):
                    inherited.setdefault(name, value)
    strategy = ((config or {}).get("metadata") or {}).get(STRATEGY_KEY)
    if isinstance(strategy, str) and strategy:
        inherited.pop("strategy", None)
        _label(lineage, {"strategy": strategy})
    if inherited:
        _label(lineage[:1], inherited)


def _lineage_of(run: RunTree) -> list[RunTree]:
    try:
        return list(_lineage(run))
    except Exception:  # tracing must never fail a run
        logger.debug("could not walk the trace to label it", exc_info=True)
        return [run]


def _label(runs: Sequence[RunTree], labels: Mapping[str, str]) -> None:
    tags = [f"{name}:{value}" for name, value in labels.items()]
    metadata = {f"{_LABEL_PREFIX}{name}": value for name, value in labels.items()}
    with _labels_lock:
        _label_names.update(labels)
        for run in runs:
            present = run.tags if run.tags is not None else []
            present.extend(t for t in tags if t not in present)
            run.tags = present
            run.extra.setdefault("metadata", {}).update(metadata)


# -- llm runs -------------------------------------------------------------------------------


def llm_run(
    backend: BaseBackend, request: GenerationRequest, grant: Grant | None = None
) -> LLMRun | None:
    """Open the ``llm`` run of ``request`` under the run being traced, or None when not
    tracing (the cost of a request then: this lookup). ``grant`` is what the run's ledger
    granted the request, whose cuts the run records."""
    parent = _current_run()
    if parent is None:
        return None
    try:
        return LLMRun(parent, backend, request, None if grant is None else grant.changes())
    except Exception:  # tracing must never fail a request
        logger.debug("could not trace a request", exc_info=True)
        return None


class LLMRun:
    """The trace of one backend request, opened by :func:`llm_run`."""

    def __init__(
        self,
        parent: RunTree,
        backend: BaseBackend,
        request: GenerationRequest,
        budget: Mapping[str, Any] | None = None,
    ) -> None:
        self._chat = request.messages is not None
        self._redact = _settings.redact
        self._texts: dict[int, list[str]] = {}
        self._finish: dict[int, str | None] = {}
        self._tokens: dict[int, int | None] = {}
        self._usage: Any = None
        inherited = {
            k: v
            for k, v in (parent.metadata or {}).items()
            # The parent's own LangSmith parameters and usage describe the parent, and its
            # decisions are the node's: none of them belong to the request.
            if not k.startswith("ls_") and k not in (_DECISIONS_KEY, "usage_metadata")
        }
        self._usage_key = (
            "tts_graph_usage" if inherited.get(USAGE_COUNTED_KEY) else "usage_metadata"
        )
        self._run = parent.create_child(
            getattr(backend, "trace_name", None) or type(backend).__name__,
            run_type="llm",
            inputs=_inputs(request, self._redact),
            tags=_inherited_tags(parent),
        )
        # create_child copies the parent's metadata as it is now; replace it with the
        # inherited part and the request's own.
        self._run.extra["metadata"] = {**inherited, **_request_metadata(backend, request)}
        if budget:
            self._run.extra["metadata"]["tts_graph_budget"] = dict(budget)
        self._run.post()

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        """Run the backend's own work untraced: the request is traced once, here. A chat model
        the backend calls, or a backend it wraps, would otherwise trace the same request again,
        and LangSmith would count its tokens twice."""
        from langsmith.run_helpers import tracing_context

        with tracing_context(parent=False, enabled=False):
            yield

    async def generate(
        self,
        send: Callable[[GenerationRequest], Awaitable[Generation]],
        request: GenerationRequest,
    ) -> Generation:
        """``send(request)``, traced."""
        try:
            with self.inside():
                gen = await send(request)
        except BaseException as exc:
            self._end(error=exc)
            raise
        self._usage = gen.usage
        self._end(completions=gen.completions, model=gen.model)
        return gen

    async def next_chunk(self, chunks: AsyncGenerator[StreamChunk, None]) -> StreamChunk:
        """The stream's next chunk (``StopAsyncIteration`` at its end), recorded."""
        with self.inside():
            chunk = await anext(chunks)
        if chunk.index >= 0:
            if not self._redact and chunk.text:
                self._texts.setdefault(chunk.index, []).append(chunk.text)
            if chunk.logprobs:  # one per token: the only token count a chunk gives
                self._tokens[chunk.index] = (self._tokens.get(chunk.index) or 0) + len(
                    chunk.logprobs
                )
            else:
                self._tokens.setdefault(chunk.index, None)
            if chunk.finish_reason is not None:
                self._finish[chunk.index] = chunk.finish_reason
        if chunk.usage is not None:
            self._usage = chunk.usage
        return chunk

    def close_stream(self, error: BaseException | None = None) -> None:
        """End a streamed request's run with what was streamed; a stream its reader closed
        early (``GeneratorExit``) is not an error."""
        indices = sorted({*self._texts, *self._finish, *self._tokens})
        samples = [
            _Sample(i, "".join(self._texts.get(i, ())), self._finish.get(i), self._tokens.get(i))
            for i in indices
        ]
        if isinstance(error, GeneratorExit):
            self._run.extra["metadata"]["tts_graph_closed_early"] = True
            error = None
        self._end(completions=samples, error=error)

    def _end(
        self,
        *,
        completions: Sequence[Completion | _Sample] = (),
        model: str = "",
        error: BaseException | None = None,
    ) -> None:
        try:
            metadata = self._run.extra["metadata"]
            outputs: dict[str, Any] = {
                "choices": [_choice(c, self._chat, self._redact) for c in completions]
            }
            if self._usage is not None:
                usage = {
                    "input_tokens": self._usage.prompt_tokens,
                    "output_tokens": self._usage.completion_tokens,
                    "total_tokens": self._usage.total_tokens,
                }
                outputs[self._usage_key] = usage
                metadata[self._usage_key] = usage
            if model:
                metadata["ls_model_name"] = model
            self._run.end(outputs=outputs, error=None if error is None else _error_text(error))
            self._run.patch()
        except Exception:  # tracing must never fail a request
            logger.debug("could not finish a request's trace", exc_info=True)


@dataclasses.dataclass(frozen=True)
class _Sample:
    """What a stream told of one sample."""

    index: int
    text: str
    finish_reason: str | None
    completion_tokens: int | None
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    reasoning: str | None = None
    stop_reason: str | int | None = None


def _error_text(error: BaseException) -> str:
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    return f"{type(error).__name__}: {error}"


def _inputs(request: GenerationRequest, redact: bool) -> dict[str, Any]:
    if request.messages is None:
        return {"prompt": REDACTED if redact else request.prompt}
    if not redact:
        return {"messages": [dict(m) for m in request.messages]}
    messages = []
    for m in request.messages:
        kept = {"role": m.get("role"), "content": REDACTED}
        if "tool_call_id" in m:
            kept["tool_call_id"] = m["tool_call_id"]
        messages.append(kept)
    return {"messages": messages}


def _choice(c: Completion | _Sample, chat: bool, redact: bool) -> dict[str, Any]:
    text = REDACTED if redact else c.text
    choice: dict[str, Any] = {"index": c.index}
    if chat:
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if c.tool_calls:
            message["tool_calls"] = [_tool_call(t, redact) for t in c.tool_calls]
        if c.reasoning and not redact:
            message["reasoning_content"] = c.reasoning
        choice["message"] = message
    else:
        choice["text"] = text
    choice["finish_reason"] = c.finish_reason
    if c.stop_reason is not None:
        choice["stop_reason"] = c.stop_reason
    if c.completion_tokens is not None:
        choice["completion_tokens"] = c.completion_tokens
    mean_logprob = getattr(c, "mean_logprob", None)
    if mean_logprob is not None:
        choice["mean_logprob"] = mean_logprob
    return choice


def _tool_call(call: Mapping[str, Any], redact: bool) -> dict[str, Any]:
    if not redact:
        return dict(call)
    return {k: v for k, v in call.items() if k != "args"}


def _request_metadata(backend: BaseBackend, request: GenerationRequest) -> dict[str, Any]:
    s = request.sampling
    params: dict[str, Any] = {"n": request.n}
    for f in dataclasses.fields(s):
        value = getattr(s, f.name)
        params[f.name] = list(value) if isinstance(value, tuple) else value
    if request.continue_final_message:
        params["continue_final_message"] = True
    if request.tools:
        params["tools"] = [dict(t) for t in request.tools]
    if request.extra_body:
        params["extra_body"] = dict(request.extra_body)
    metadata: dict[str, Any] = {
        "ls_model_type": "chat" if request.messages is not None else "llm",
        "ls_temperature": s.temperature,
        "ls_max_tokens": s.max_tokens,
        "ls_invocation_params": params,
    }
    if s.stop:
        metadata["ls_stop"] = list(s.stop)
    describe = getattr(backend, "trace_metadata", None)
    if callable(describe):
        metadata.update(describe())
    return metadata


# -- redaction --------------------------------------------------------------------------------


def redact_candidates(
    enabled: bool = True, *, keys: StateKeys | None = None, **client_options: Any
) -> Client | None:
    """Leave candidate texts out of every trace this process sends. Call it once, at start-up.

    Left out (each replaced by ``"[redacted]"``): each candidate's ``text``, its tool calls'
    arguments and the strings in its ``metadata`` (such as its thinking); the chosen response
    (state key ``response``, renamed with ``keys=``, and the ``AIMessage`` a node appends to a
    conversation); and, in each request's ``llm`` run, the messages or prompt and the samples.
    Kept: usage and token counts, scores, verdicts, extracted answers, decisions, sampling
    parameters, and the question or conversation the graph was given (to hide those too, pass
    ``hide_inputs=True``, which LangSmith applies to every run's inputs).

    It installs a LangSmith client (``langsmith.configure(client=...)``, which every tracer
    made afterwards uses) whose ``hide_inputs`` and ``hide_outputs`` apply
    :func:`hide_candidate_texts`; ``client_options`` go to that client (``api_url``,
    ``api_key``, ...; a ``hide_inputs``/``hide_outputs`` of yours runs after ours). Returns
    that client. If you trace through a client of your own instead, give it
    ``hide_inputs=hide_candidate_texts, hide_outputs=hide_candidate_texts``.
    ``redact_candidates(False)`` turns redaction off and drops the client it installed.

    >>> import tts_graph.tracing
    >>> tts_graph.tracing.redact_candidates()  # doctest: +SKIP
    """
    import langsmith

    if not enabled:
        _settings.redact = False
        if _settings.client is not None:
            langsmith.configure(client=None)
            _settings.client = None
        return None
    response = "response" if keys is None else keys.response
    _settings.response_keys = frozenset({response})
    options = dict(client_options)
    hide_inputs = _then(hide_candidate_texts, options.pop("hide_inputs", None))
    hide_outputs = _then(hide_candidate_texts, options.pop("hide_outputs", None))
    client = langsmith.Client(hide_inputs=hide_inputs, hide_outputs=hide_outputs, **options)
    langsmith.configure(client=client)
    _settings.client = client
    _settings.redact = True
    return client


def _then(
    first: Callable[[Any], Any], second: bool | Callable[[dict[str, Any]], dict[str, Any]] | None
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    if second is True:
        return lambda _: {}
    if not second:
        return first
    after = second
    return lambda data: after(first(data))


def hide_candidate_texts(value: T) -> T:
    """``value`` with candidate texts replaced by ``"[redacted]"`` (see
    :func:`redact_candidates` for what is left out and what is kept); the rest is returned as
    it is, and nothing is changed in place.

    It takes a run's inputs or outputs as LangSmith's ``Client(hide_inputs=...,
    hide_outputs=...)`` passes them, or a node's input or output as LangGraph's
    ``TracePolicy(process_inputs=..., process_outputs=...)`` does.

    >>> from tts_graph import Candidate
    >>> [c] = hide_candidate_texts([Candidate(index=0, text="7 + 5 = 12", answer="12")])
    >>> c.text, c.answer
    ('[redacted]', '12')
    """
    redacted: T = _redact(value, _settings.response_keys, 0)
    return redacted


_MAX_DEPTH = 32


def _redact(value: Any, response_keys: frozenset[str], depth: int) -> Any:
    if depth > _MAX_DEPTH or value is None or isinstance(value, str | int | float | bool):
        return value
    from langchain_core.messages import AIMessage, BaseMessage
    from pydantic import BaseModel

    from tts_graph.candidate import Candidate

    if isinstance(value, Candidate):
        return dataclasses.replace(
            value,
            text=REDACTED,
            tool_calls=tuple(_tool_call(t, True) for t in value.tool_calls),
            metadata=_redact_strings(value.metadata, 0),
        )
    if isinstance(value, BaseMessage):
        if isinstance(value, AIMessage) and _DECISIONS_KEY in (value.response_metadata or {}):
            return value.model_copy(
                update={
                    "content": REDACTED,
                    "tool_calls": [{**t, "args": {}} for t in value.tool_calls],
                }
            )
        return value
    if isinstance(value, Mapping):
        return _redact_mapping(value, response_keys, depth)
    if isinstance(value, list | tuple):
        items = [_redact(v, response_keys, depth + 1) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return type(value)(items) if isinstance(value, tuple) else items
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for f in dataclasses.fields(value):
            if not f.init:
                continue
            old = getattr(value, f.name)
            new = _redact(old, response_keys, depth + 1)
            if new is not old:
                changes[f.name] = new
        if not changes:
            return value
        try:
            return dataclasses.replace(value, **changes)
        except Exception:
            return {
                **{f.name: getattr(value, f.name) for f in dataclasses.fields(value)},
                **changes,
            }
    if isinstance(value, BaseModel):
        changes = {}
        for name in type(value).model_fields:
            old = getattr(value, name, None)
            new = _redact(old, response_keys, depth + 1)
            if new is not old:
                changes[name] = new
        return value.model_copy(update=changes) if changes else value
    return value


def _redact_mapping(
    value: Mapping[str, Any], response_keys: frozenset[str], depth: int
) -> Mapping[str, Any]:
    if _is_serialized_reply(value):
        # A chosen reply as LangChain's tracer serialises it ({"lc": 1, "kwargs": {...}}).
        kwargs = dict(value["kwargs"])
        kwargs["content"] = REDACTED
        if kwargs.get("tool_calls"):
            kwargs["tool_calls"] = [{**t, "args": {}} for t in kwargs["tool_calls"]]
        return {**value, "kwargs": kwargs}
    out: dict[str, Any] = {}
    changed = False
    for k, v in value.items():
        if k in response_keys and isinstance(v, str):
            new: Any = REDACTED
        else:
            new = _redact(v, response_keys, depth + 1)
        changed = changed or new is not v
        out[k] = new
    # A chat model's generation ({"text", "message"}) repeats its message's text.
    message = value.get("message")
    redacted_message = isinstance(message, Mapping) and out.get("message") is not message
    if redacted_message and isinstance(out.get("text"), str):
        out["text"] = REDACTED
    return out if changed else value


def _is_serialized_reply(value: Mapping[str, Any]) -> bool:
    kwargs = value.get("kwargs")
    return (
        value.get("lc") == 1
        and isinstance(kwargs, Mapping)
        and isinstance(kwargs.get("response_metadata"), Mapping)
        and _DECISIONS_KEY in kwargs["response_metadata"]
    )


def _redact_strings(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return REDACTED
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {k: _redact_strings(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_strings(v, depth + 1) for v in value)
    return value
