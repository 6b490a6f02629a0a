"""Making a node's decision visible: in state, in the LangGraph stream and in the trace."""

from __future__ import annotations

import logging
from typing import Any

from langgraph.config import get_stream_writer
from langsmith import get_current_run_tree

from tts_graph.metering import current_spending
from tts_graph.state import Decision

logger = logging.getLogger(__name__)


def emit(decision: Decision) -> Decision:
    """Send ``decision`` as a custom stream event (``stream_mode="custom"``), attach it to the
    current LangSmith run's metadata (key ``tts_graph``) when tracing, and log it.

    Outside a running graph (a node called directly) there is no stream to write to; the
    decision is still returned for the state update.
    """
    try:
        writer = get_stream_writer()
    except (RuntimeError, KeyError):  # not inside a graph run (no config, or no runtime in it)
        writer = None
    if writer is not None:
        writer({"tts_graph": decision})
    # With LangSmith tracing on, the node's run carries its decisions as metadata.
    run = get_current_run_tree()
    if run is not None:
        run.metadata.setdefault("tts_graph", []).append(decision)
    logger.debug("decision: %s", decision)
    return decision


def decision(node: str, kind: str, **data: Any) -> Decision:
    """Build and emit a decision record. Inside a node's spending scope, what the budget did to
    its requests since the last record (cuts of ``n``/``max_tokens``, refusals, cancellations)
    is added under ``"budget"``."""
    record: Decision = {"node": node, "kind": kind, **data}
    scope = current_spending()
    if scope is not None and (notes := scope.take_notes()):
        record["budget"] = notes
    return emit(record)
