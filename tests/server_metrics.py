"""A vLLM server's own counters, read from its Prometheus endpoint (``GET /metrics``).

Tests compare what the code under test counted (usage, requests in flight) with what the server
says it did. A metric is summed over its labels (vLLM labels each by model and engine, some
also by finish reason). A name the server does not export is an error, not a zero, so that a
misspelt or renamed metric cannot make a measurement pass vacuously.

    before = await settled_tokens(server.root_url)
    ...  # the code under test
    generated = await settled_tokens(server.root_url) - before
    assert await metric(server.root_url, RUNNING, WAITING) == 0
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
GENERATED = "vllm:generation_tokens_total"
SUCCEEDED = "vllm:request_success_total"

TIMEOUT_S = 120.0  # the machine may be busy: a scrape is slow, not failed


def parse(text: str) -> dict[str, float]:
    """Each sample name in a Prometheus text exposition, with its values summed over labels."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def total(values: Mapping[str, float], *names: str) -> float:
    """The sum of ``names`` in ``values`` (as :func:`parse` returns them)."""
    missing = [name for name in names if name not in values]
    if missing:
        raise KeyError(f"the server exports no metric named {', '.join(missing)}")
    return sum(values[name] for name in names)


async def scrape(
    root_url: str, *, client: httpx.AsyncClient | None = None, request_timeout_s: float = TIMEOUT_S
) -> dict[str, float]:
    """Every metric of the server at ``root_url`` (no ``/v1``), as :func:`parse` returns them."""
    if client is None:
        async with httpx.AsyncClient(timeout=request_timeout_s) as own:
            return await scrape(root_url, client=own)
    response = await client.get(f"{root_url}/metrics")
    response.raise_for_status()
    return parse(response.text)


async def metric(root_url: str, *names: str, request_timeout_s: float = TIMEOUT_S) -> float:
    """The sum of the server's metrics ``names`` now, e.g. ``metric(url, RUNNING, WAITING)``."""
    return total(await scrape(root_url, request_timeout_s=request_timeout_s), *names)


async def settled_tokens(root_url: str, *, polls: int = 200, interval_s: float = 0.1) -> float:
    """The server's generated-token counter once no request is running any more (or as it is
    after ``polls`` looks, ``interval_s`` apart). Both come from the same scrape."""
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
        values = await scrape(root_url, client=client)
        for _ in range(polls - 1):
            if total(values, RUNNING) == 0:
                break
            await asyncio.sleep(interval_s)
            values = await scrape(root_url, client=client)
    return total(values, GENERATED)


def metric_sync(root_url: str, *names: str, request_timeout_s: float = TIMEOUT_S) -> float:
    """:func:`metric` for code that runs outside an event loop."""
    response = httpx.get(f"{root_url}/metrics", timeout=request_timeout_s)
    response.raise_for_status()
    return total(parse(response.text), *names)
