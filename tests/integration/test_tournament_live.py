"""The knockout tournament with a real LLM judge on the vLLM server."""

from tts_graph import SamplingParams, Usage
from tts_graph.candidate import Candidate
from tts_graph.nodes.tournament import make_tournament_node
from tts_graph.verifiers.answer import extract_answer
from tts_graph.verifiers.judge import LLMJudge

QUESTION = "What is 7+5?"


class CountingJudge:
    """Wraps a judge and counts its calls and what they cost."""

    def __init__(self, judge):
        self.judge = judge
        self.calls = 0
        self.usage = Usage()

    async def compare(self, question, a, b):
        pref = await self.judge.compare(question, a, b)
        self.calls += 1
        self.usage += pref.usage
        return pref


def judge_for(backend):
    return CountingJudge(LLMJudge(backend, sampling=SamplingParams(temperature=0.0, max_tokens=48)))


def candidates(*texts):
    # As a fan-out node would leave them: with the extracted answer.
    return [Candidate(index=i, text=t, answer=extract_answer(t)) for i, t in enumerate(texts)]


async def test_knockout_of_four_distinct_candidates(backend):
    judge = judge_for(backend)
    pool = candidates("7 + 5 = 12.", "7 + 5 = 13.", "The answer is 11.", "7 + 5 = 75.")
    node = make_tournament_node(judge, judgements=2)
    out = await node({"question": QUESTION, "candidates": pool})
    record = out["decisions"][0]
    assert judge.calls == record["judge_calls"] == (4 - 1) * 2
    assert out["usage"].calls == 6
    assert out["usage"].total_tokens == judge.usage.total_tokens > 0
    assert out["usage"].completion_tokens == judge.usage.completion_tokens
    assert out["response"] in {c.text for c in pool}
    assert out["answer"] in {"12", "13", "11", "75"}
    assert len(record["bracket"]) == 2
    assert record["consistency"] is None or 0.0 <= record["consistency"] <= 1.0


async def test_identical_answers_among_four_need_fewer_calls(backend):
    judge = judge_for(backend)
    pool = candidates("7 + 5 = 12.", "The answer is 12.", "7 + 5 = 13.", "7 + 5 = 75.")
    node = make_tournament_node(
        judge, judgements=2, extract="default"
    )  # a math task: answers decide
    out = await node({"question": QUESTION, "candidates": pool})
    record = out["decisions"][0]
    assert record["bracket"][0]["matches"][0]["identical"] is True
    assert judge.calls == record["judge_calls"] == 4
    assert out["usage"].calls == 4
