"""Scale-out: two vLLM replicas behind vllm-router, with VLLMBackend pointed at the router.

The requests spread over both replicas (read from each replica's own request counters, as
deltas over what the test sent), and an evaluation run survives the restart of one replica:
the problems sent while it is down go to the other one, and none of them fails. Every process
the test starts (two servers, the router, the restarted server) is gone when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tts_graph import SamplingParams, VLLMBackend
from tts_graph.backends import GenerationRequest
from tts_graph.backends.server import ServerConfig, VLLMServer, free_port
from tts_graph.eval.datasets import Judge, load_dataset
from tts_graph.eval.harness import run_eval
from tts_graph.spec import load_spec

from server_metrics import SUCCEEDED, metric_sync

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m"
STARTUP_S = 600.0

# One request per problem (best-of-2 in one n=2 request, no budget, so no /tokenize request
# takes a turn of the router's round robin). vLLM counts each of a request's n samples as a
# request of its own: a problem adds 2 to the replica that served it.
SPEC = load_spec(
    {
        "name": "sums-best-of-2",
        "sampling": {"temperature": 0.7, "max_tokens": 24},
        "prompt": {"system": 'Answer with a last line "Answer: <number>".'},
        "strategy": {"kind": "best_of_n", "n": 2},
    }
)
PER_PROBLEM = 2


def requests_served(root_url: str) -> int:
    """The replica's own count of finished requests (vLLM's ``vllm:request_success_total``,
    summed over its labels)."""
    return int(metric_sync(root_url, SUCCEEDED, request_timeout_s=30))


async def served_at_least(replicas: list[VLLMServer], minimum: list[int]) -> list[int]:
    """Each replica's count once it has reached ``minimum`` (a replica counts a request just
    after answering it), or as it is after a generous deadline."""
    deadline = time.monotonic() + 60
    while True:
        now = [await asyncio.to_thread(requests_served, root_url(r)) for r in replicas]
        if all(n >= m for n, m in zip(now, minimum, strict=True)) or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.2)  # polling interval of the counters


def root_url(server: VLLMServer) -> str:
    return server.base_url.removesuffix("/v1")


async def router_sees_all_healthy(router: Router) -> None:
    """Until the router's /health says every worker is healthy (it answers 503 naming the
    unhealthy ones otherwise)."""
    deadline = time.monotonic() + 120
    async with httpx.AsyncClient(timeout=5) as client:
        while (await client.get(f"{router.root_url}/health")).status_code != 200:
            assert time.monotonic() < deadline, "the router never saw the restarted replica"
            await asyncio.sleep(0.2)  # polling interval of the router's health


def running_in_groups(groups: list[int]) -> set[int]:
    """The live processes (not zombies) of the given process groups: what the test started."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # it exited meanwhile
            continue
        state, _, pgid = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(pgid) in groups and state != "Z":
            found.add(int(entry.name))
    return found


def assert_all_exited(groups: list[int]) -> None:
    # A process killed a moment ago may still be on its way out: give it a while.
    deadline = time.monotonic() + 60
    while (left := running_in_groups(groups)) and time.monotonic() < deadline:
        time.sleep(0.2)  # polling interval
    assert not left, f"processes left behind: {sorted(left)}"


@dataclass
class Router:
    """vllm-router in front of ``workers``, in its own process group."""

    workers: list[str]
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [
            sys.executable, "-m", "vllm_router.launch_router",
            "--host", "127.0.0.1", "--port", str(self.port),
            "--worker-urls", *self.workers,
            "--policy", "round_robin",
            # Its metrics port defaults to a fixed one: take a free one instead.
            "--prometheus-port", str(free_port()),
            # Notice a replica that went away (and came back) within seconds, not a minute.
            "--health-check-interval-secs", "1",
            "--health-failure-threshold", "1",
            "--health-success-threshold", "1",
            "--log-level", "warning",
        ]  # fmt: skip
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 120
        with httpx.Client(timeout=5) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"vllm-router exited with {self.process.returncode}: "
                        f"{self.log.read_text(errors='replace')[-2000:]}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.root_url}/health").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"vllm-router did not become healthy; log: {self.log}")
                # Polling interval, not a wait for readiness: readiness is the 200 above.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=0.5)

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=15)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


@dataclass
class Cluster:
    replicas: list[VLLMServer]
    router: Router
    started: list[int] = field(default_factory=list)  # process groups, to check at the end

    def served(self) -> list[int]:
        return [requests_served(root_url(r)) for r in self.replicas]

    def restart_replica(self, i: int) -> None:
        """Stop replica ``i`` and start a new server on the same port (the router's URL)."""
        old = self.replicas[i]
        old.stop()
        new = VLLMServer(ServerConfig(model=MODEL, port=old.port, startup_timeout_s=STARTUP_S))
        self.replicas[i] = new
        start(new, self.started)


def start(server: VLLMServer, started: list[int]) -> None:
    try:
        server.start()
    finally:
        if server._process is not None:
            started.append(server._process.pid)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if importlib.util.find_spec("vllm_router") is None:
        pytest.fail("vllm-router is not installed: run scripts/setup.sh (it is a dev dependency)")
    replicas = [
        VLLMServer(ServerConfig(model=MODEL, startup_timeout_s=STARTUP_S)) for _ in range(2)
    ]
    log = tmp_path_factory.mktemp("router") / "router.log"
    c = Cluster(replicas, Router([root_url(r) for r in replicas], log))
    try:
        # Both start at once: on a small machine start-up is mostly waiting on imports.
        with ThreadPoolExecutor(2) as pool:
            for f in [pool.submit(start, r, c.started) for r in replicas]:
                f.result()
        c.router.start()
        assert c.router.process is not None
        c.started.append(c.router.process.pid)
        yield c
    finally:
        c.router.stop()
        for r in c.replicas:
            r.stop()
    assert_all_exited(c.started)


async def test_requests_spread_over_both_replicas(cluster):
    before = cluster.served()
    async with VLLMBackend(f"{cluster.router.root_url}/v1") as backend:
        params = SamplingParams(temperature=0.7, max_tokens=4, seed=0, ignore_eos=True)
        request = GenerationRequest.chat([{"role": "user", "content": "Hi"}], sampling=params)
        gens = [await backend.generate(request) for _ in range(8)]
    after = await served_at_least(cluster.replicas, [b + 1 for b in before])
    deltas = [a - b for a, b in zip(after, before, strict=True)]
    assert all(g.completions[0].completion_tokens == 4 for g in gens)
    assert sum(deltas) == 8, deltas
    assert min(deltas) >= 1, f"one replica served everything: {deltas}"


class Gate(httpx.AsyncBaseTransport):
    """Holds the eval's k-th generation request until ``release[k]`` is set: makes the
    restart happen at a known point of the run, whatever the machine's speed."""

    def __init__(self, inner: httpx.AsyncBaseTransport, hold: set[int]) -> None:
        self.inner = inner
        self.sent = 0
        self.reached = {k: asyncio.Event() for k in hold}
        self.release = {k: asyncio.Event() for k in hold}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/chat/completions"):
            self.sent += 1
            k = self.sent
            if k in self.reached:
                self.reached[k].set()
                await self.release[k].wait()
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_an_eval_survives_the_restart_of_one_replica(cluster, tmp_path):
    problems = load_dataset("basic_arithmetic", limit=6)
    # Problems 1-2 run on both replicas; 3-4 are sent while replica 0 is down; 5-6 once it is
    # back.
    gate = Gate(httpx.AsyncHTTPTransport(), hold={3, 5})
    http = httpx.AsyncClient(transport=gate, timeout=300)
    backend = VLLMBackend(f"{cluster.router.root_url}/v1", http_client=http)
    before = cluster.served()
    async with Judge() as judge:
        run = asyncio.create_task(
            run_eval(SPEC, problems, backend, tmp_path / "run", dataset="basic_arithmetic",
                     judge=judge, concurrency=1)
        )  # fmt: skip
        await asyncio.wait_for(gate.reached[3].wait(), STARTUP_S)
        first = await served_at_least(cluster.replicas, [b + PER_PROBLEM for b in before])
        await asyncio.to_thread(cluster.replicas[0].stop)
        gate.release[3].set()
        await asyncio.wait_for(gate.reached[5].wait(), STARTUP_S)
        outage = await served_at_least(cluster.replicas[1:], [first[1] + 2 * PER_PROBLEM])
        await asyncio.to_thread(cluster.restart_replica, 0)
        await router_sees_all_healthy(cluster.router)
        gate.release[5].set()
        records = await asyncio.wait_for(run, STARTUP_S)
        last = await served_at_least(cluster.replicas, [PER_PROBLEM, outage[0] + PER_PROBLEM])
    await http.aclose()

    assert [r["id"] for r in records] == [p.id for p in problems]
    failed = {r["id"]: r["error"] for r in records if r["error"] is not None}
    assert not failed, failed
    assert all(len(r["candidates"]) == 2 for r in records)
    # Problems 1-2: one on each replica (round robin).
    assert [f - b for f, b in zip(first, before, strict=True)] == [PER_PROBLEM] * 2
    # Problems 3-4, sent while replica 0 was down: both on replica 1.
    assert outage[0] - first[1] == 2 * PER_PROBLEM
    # Problems 5-6, once the router saw the restarted replica 0: one on each again (the new
    # server counts from zero).
    assert last == [PER_PROBLEM, outage[0] + PER_PROBLEM]
