"""Reading tool calls that a small model wrote without the tags its chat template asks for."""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["bare_calls"]

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def bare_calls(text: str, offered: set[str]) -> list[dict[str, Any]] | None:
    """The tool calls a reply consists of, when it is only a JSON object (or a list of them)
    with ``name`` (an offered tool) and ``arguments``, possibly in a code fence; else None."""
    body = text.strip()
    if (fenced := _FENCE.match(body)) is not None:
        body = fenced.group(1)
    try:
        value = json.loads(body)
    except ValueError:
        return None
    calls = value if isinstance(value, list) else [value]
    for call in calls:
        if not (
            isinstance(call, dict)
            and call.get("name") in offered
            and isinstance(call.get("arguments", call.get("parameters")), dict)
        ):
            return None
    return [
        {"name": c["name"], "arguments": c.get("arguments", c.get("parameters"))} for c in calls
    ]
