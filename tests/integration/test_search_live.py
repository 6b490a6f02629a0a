"""Beam search and DVTS against the real vLLM server, scored by a process reward model.

The steps come from the embedded model: the server stops each request at the separator and
the next request continues the partial assistant message. No PRM small enough for a CPU ships
in a package, so the PRM is the library's ``ProcessRewardVerifier`` talking to a loopback server
that speaks vLLM's ``/pooling`` API and scores each step by its text. A two-shot prompt makes
the small model write one short step per paragraph, so steps end at ``"\\n\\n"`` reliably.
Sampled text varies from run to run: the tests check how the search treats whatever comes.
"""

from __future__ import annotations

import copy
import http.server
import json
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml

from tts_graph import Budget, SamplingParams
from tts_graph.backends.base import Generation, GenerationRequest
from tts_graph.backends.vllm import VLLMBackend
from tts_graph.graphs.search import create_beam_search_graph, create_dvts_graph
from tts_graph.verifiers.answer import extract_marked_answer
from tts_graph.verifiers.reward import ProcessRewardVerifier

SEP = "\n\n"
STEP_TOKEN = "<extra_0>"
SYSTEM = "Solve the problem in short steps separated by blank lines, then end with 'Answer: <final answer>'."
SHOTS = [
    {"role": "user", "content": "What is 2+3?"},
    {"role": "assistant", "content": "We add 2 and 3.\n\n2 + 3 = 5.\n\nAnswer: 5"},
    {"role": "user", "content": "What is 4+4?"},
    {"role": "assistant", "content": "We add 4 and 4.\n\n4 + 4 = 8.\n\nAnswer: 8"},
]
SAMPLING = SamplingParams(temperature=0.8, max_tokens=24)
QUESTION = {"question": "What is 7+5?"}


def two_shot(state):
    return [
        {"role": "system", "content": SYSTEM},
        *SHOTS,
        {"role": "user", "content": state["question"]},
    ]


def p_good(step: str) -> float:
    """The loopback PRM's step score: a step stating the sum is best, an addition is good,
    a subtraction bad; the small differences break most ties between other steps."""
    if "12" in step:
        return 0.9
    if "subtract" in step.lower():
        return 0.1
    if "add" in step.lower():
        return 0.7
    return 0.3 + 0.01 * (len(step) % 10)


def score(text: str) -> float:
    """What the search sees for a partial solution: the last step's score (``"last"``)."""
    return p_good([s.strip() for s in text.split(SEP) if s.strip()][-1])


class LoopbackPRM:
    """A loopback HTTP server answering ``POST /pooling`` as vLLM serves a PRM: one
    ``[p_bad, p_good]`` row per step token in the assistant message."""

    def __init__(self) -> None:
        self.scored: list[str] = []
        prm = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answer = body["messages"][-1]["content"]
                prm.scored.append(answer)
                steps = answer.split(STEP_TOKEN)[:-1]
                rows = [[1 - p_good(s), p_good(s)] for s in steps]
                tokens = len(answer.split())
                raw = json.dumps(
                    {
                        "object": "list",
                        "data": [{"index": 0, "object": "pooling", "data": rows}],
                        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


@pytest.fixture
def prm_server() -> Iterator[LoopbackPRM]:
    server = LoopbackPRM()
    thread = threading.Thread(
        target=server.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


class RecordingBackend(VLLMBackend):
    """The real backend, keeping every request it sent with its reply."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.sent: list[tuple[GenerationRequest, Generation]] = []

    async def _generate(self, request: GenerationRequest) -> Generation:
        gen = await super()._generate(request)
        self.sent.append((request, gen))
        return gen


@pytest.fixture
async def backend(vllm_server) -> AsyncIterator[RecordingBackend]:
    b = RecordingBackend(vllm_server.base_url)
    yield b
    await b.aclose()


def prefix_of(request: GenerationRequest) -> str:
    return request.messages[-1]["content"] if request.continue_final_message else ""


async def test_beam_search_continues_the_best_scored_steps_on_the_server(backend, prm_server):
    prm = ProcessRewardVerifier(prm_server.base_url)
    graph = create_beam_search_graph(
        backend, prm, n=4, width=2, max_steps=3, prompt=two_shot, sampling=SAMPLING
    ).compile()
    state = await graph.ainvoke(QUESTION)
    (first, reply), *later = backend.sent
    assert (first.n, first.continue_final_message) == (4, False)
    assert first.sampling.stop == (SEP,)
    step1 = [c.text for c in reply.completions]
    opened = [  # the beams step 1 left open: ended at the separator, no answer yet
        t
        for t, c in zip(step1, reply.completions, strict=True)
        if c.stop_reason == SEP and t.strip() and extract_marked_answer(t) is None
    ]
    assert opened, f"no step ended at the separator: {step1}"
    assert all(t.endswith(SEP) for t in opened)  # the separator is kept in the step
    # Step 2 continues the best-scored open beams of step 1, at most n / width = 2 of them.
    step2 = [r for r, _ in later if prefix_of(r).count(SEP) == 1]
    assert 1 <= len(step2) <= 2
    assert all(r.continue_final_message and r.n == 4 // len(step2) for r in step2)
    continued = sorted((score(prefix_of(r)) for r in step2), reverse=True)
    assert continued == sorted((score(t) for t in opened), reverse=True)[: len(step2)]
    assert all(prefix_of(r) in opened for r in step2)
    # Every partial solution was scored step by step: steps joined by the step token.
    assert any(s.count(STEP_TOKEN) >= 2 for s in prm_server.scored)
    assert all(s.endswith(STEP_TOKEN) for s in prm_server.scored)
    # The chosen answer is the best-scored finished candidate, and everything was charged.
    cands = state["candidates"]
    assert 1 <= len(cands) <= 4
    pool = [c for c in cands if c.metadata["search"]["finished"]] or cands
    chosen = next(c for c in pool if c.text == state["response"])
    assert chosen.score == max(c.score for c in pool)
    assert state["usage"].calls == len(backend.sent) + len(prm_server.scored)
    assert state["usage"].completion_tokens == sum(
        g.usage.completion_tokens for _, g in backend.sent
    )
    steps = [d for d in state["decisions"] if d["kind"] == "search_step"]
    assert steps and all(
        min((b["score"] for b in d["kept"]), default=1.0)
        >= max((b["score"] for b in d["pruned"]), default=0.0)
        for d in steps
    )


async def test_dvts_subtrees_each_follow_their_own_best_step(backend, prm_server):
    prm = ProcessRewardVerifier(prm_server.base_url)
    graph = create_dvts_graph(
        backend, prm, n=4, width=2, max_steps=2, prompt=two_shot, sampling=SAMPLING, seed=100
    ).compile()
    state = await graph.ainvoke(QUESTION)
    first = [(r, g) for r, g in backend.sent if not r.continue_final_message]
    assert len(first) == 2 and all(r.n == 2 for r, _ in first)
    by_tree = {r.sampling.seed - 100: g for r, g in first}  # step 0 of subtree j: seed 100 + j
    assert sorted(by_tree) == [0, 1]
    continuations = [r for r, _ in backend.sent if r.continue_final_message]
    assert continuations, "every subtree finished at its first step"
    for request in continuations:
        tree = (request.sampling.seed - 100) % 4
        own = [c.text for c in by_tree[tree].completions]
        # A subtree continues the best-scored of its own samples, never another subtree's.
        assert prefix_of(request) in own
        assert score(prefix_of(request)) == max(score(t) for t in own)
    cands = state["candidates"]
    assert sorted({c.metadata["search"]["subtree"] for c in cands}) == [0, 1]
    assert all(c.source == "dvts" for c in cands)
    assert state["strategy"] == "dvts" and state["response"]


async def test_running_out_of_calls_returns_the_best_beam_so_far(backend, prm_server):
    prm = ProcessRewardVerifier(prm_server.base_url)
    graph = create_beam_search_graph(
        backend, prm, n=4, width=2, max_steps=3, prompt=two_shot, sampling=SAMPLING
    ).compile()
    # One request and four PRM calls fill the first step; the sixth call is all that is left.
    state = await graph.ainvoke({**QUESTION, "budget": Budget(max_calls=6)})
    assert state["usage"].calls <= 6
    assert len(backend.sent) + len(prm_server.scored) == state["usage"].calls
    record = next(d for d in state["decisions"] if d["kind"] == "search")
    assert record["reason"] == "budget"
    assert state["response"]
    assert state["candidates"]


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "specs" / "beam-search-prm.yaml"
EXAMPLE_DATA = yaml.safe_load(EXAMPLE.read_text())


async def test_the_beam_search_example_spec_runs_with_a_prm(backend, prm_server, monkeypatch):
    data = copy.deepcopy(EXAMPLE_DATA)
    data["strategy"].update(max_steps=3, step_max_tokens=32)
    monkeypatch.setenv("TTS_GRAPH_PRM_URL", prm_server.base_url)
    from tts_graph.spec import build_graph, load_spec

    spec = load_spec(data)
    assert spec.strategy.prm.base_url == prm_server.base_url
    state = await build_graph(spec, backend).compile().ainvoke({"question": "What is 7 + 5?"})
    assert prm_server.scored  # the PRM scored the partial solutions
    assert state["candidates"] and state["strategy"] == "beam_search"
    assert state["usage"].calls >= 2
