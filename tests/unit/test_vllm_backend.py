"""VLLMBackend against httpx.MockTransport: request shape, parsing, retries, error classes."""

import asyncio
import json

import httpx
import pytest

from tts_graph.backends.base import GenerationRequest, SamplingParams
from tts_graph.backends.vllm import VLLMBackend
from tts_graph.errors import BackendError, ConfigError, EngineDeadError
from tts_graph.graphs import create_best_of_n_graph

BASE = "http://vllm.test/v1"
MODELS = {"object": "list", "data": [{"id": "tiny", "object": "model", "root": "/nonexistent"}]}


def chat_reply(n=2, prompt_tokens=11):
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": f"sample {i}", "reasoning": None},
            "finish_reason": "stop" if i else "length",
            "stop_reason": "\n" if i else None,
            "token_ids": list(range(3 + i)),
            "logprobs": {
                "content": [
                    {
                        "token": "a",
                        "logprob": -0.5,
                        "bytes": [97],
                        "top_logprobs": [{"token": "a", "logprob": -0.5, "bytes": [97]}],
                    },
                    {"token": "b", "logprob": -1.5, "bytes": [98], "top_logprobs": []},
                ]
            },
        }
        for i in reversed(range(n))  # out of order on purpose
    ]
    completion = sum(3 + i for i in range(n))
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "tiny",
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        },
    }


class Server:
    """A scripted fake vLLM: `script` is a list of (status, body) for POSTs, then 200 replies."""

    def __init__(self, script=(), health=200, reply=None):
        self.script = list(script)
        self.health = health
        self.reply = reply or chat_reply()
        self.posts = []
        self.health_checks = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/models":
            return httpx.Response(200, json=MODELS)
        if path == "/health":
            self.health_checks += 1
            return httpx.Response(self.health)
        if path == "/tokenize":
            return httpx.Response(200, json={"tokens": [5, 6, 7], "count": 3})
        self.posts.append(json.loads(request.content))
        if self.script:
            status, body = self.script.pop(0)
            if isinstance(body, Exception):
                raise body
            return httpx.Response(status, json=body)
        return httpx.Response(200, json=self.reply)


def make_backend(server, **kwargs):
    client = httpx.AsyncClient(transport=httpx.MockTransport(server))
    kwargs.setdefault("backoff_base_s", 0.001)
    kwargs.setdefault("backoff_max_s", 0.002)
    return VLLMBackend(BASE, http_client=client, **kwargs)


CHAT = GenerationRequest.chat([{"role": "user", "content": "hi"}], n=2)


async def test_every_sampling_field_is_sent_explicitly():
    server = Server()
    backend = make_backend(server)
    params = SamplingParams(
        temperature=0.3,
        top_p=0.9,
        top_k=5,
        min_p=0.1,
        max_tokens=17,
        min_tokens=2,
        seed=7,
        stop=("\n\n",),
        stop_token_ids=(2,),
        include_stop_str_in_output=True,
        skip_special_tokens=False,
        logprobs=True,
        top_logprobs=3,
    )
    await backend.generate(
        GenerationRequest.chat([{"role": "user", "content": "hi"}], n=4, sampling=params)
    )
    body = server.posts[0]
    expected = {
        "model": "tiny",
        "n": 4,
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 5,
        "min_p": 0.1,
        "max_tokens": 17,
        "min_tokens": 2,
        "seed": 7,
        "stop": ["\n\n"],
        "stop_token_ids": [2],
        "include_stop_str_in_output": True,
        "skip_special_tokens": False,
        "logprobs": True,
        "top_logprobs": 3,
        "return_token_ids": True,
        "continue_final_message": False,
        "add_generation_prompt": True,
        "repetition_penalty": 1.0,
        "ignore_eos": False,
    }
    assert {k: body[k] for k in expected} == expected


async def test_continuation_of_a_partial_assistant_message():
    server = Server()
    backend = make_backend(server)
    request = GenerationRequest.chat(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Let me think"}],
        continue_final_message=True,
    )
    await backend.generate(request)
    body = server.posts[0]
    assert body["continue_final_message"] is True
    assert body["add_generation_prompt"] is False
    assert body["messages"][-1] == {"role": "assistant", "content": "Let me think"}


def test_continuation_needs_a_final_assistant_message():
    with pytest.raises(ConfigError, match="assistant"):
        GenerationRequest.chat([{"role": "user", "content": "hi"}], continue_final_message=True)


async def test_raw_completion_request_and_parsing():
    reply = {
        "id": "x",
        "object": "text_completion",
        "created": 0,
        "model": "tiny",
        "choices": [
            {
                "index": 0,
                "text": " Paris",
                "finish_reason": "stop",
                "stop_reason": ".",
                "token_ids": [9, 10],
                "logprobs": {
                    "tokens": [" Par", "is"],
                    "token_logprobs": [-0.25, -0.75],
                    "top_logprobs": [{" Par": -0.25}, {"is": -0.75}],
                    "text_offset": [0, 4],
                },
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
    server = Server(reply=reply)
    backend = make_backend(server)
    gen = await backend.generate(
        GenerationRequest(
            prompt="The capital of France is",
            sampling=SamplingParams(logprobs=True, top_logprobs=1),
        )
    )
    assert server.posts[0]["prompt"] == "The capital of France is"
    assert server.posts[0]["logprobs"] == 1
    (c,) = gen.completions
    assert (c.text, c.stop_reason, c.completion_tokens) == (" Paris", ".", 2)
    assert c.mean_logprob == pytest.approx(-0.5)
    assert c.logprobs[0].top == ((" Par", -0.25),)


async def test_parses_samples_in_index_order_with_exact_counts():
    backend = make_backend(Server(), model_params=1000)
    gen = await backend.generate(CHAT)
    assert [c.index for c in gen.completions] == [0, 1]
    assert [c.completion_tokens for c in gen.completions] == [3, 4]
    assert gen.completions[1].stop_reason == "\n"
    assert gen.completions[0].finish_reason == "length"
    assert gen.completions[0].mean_logprob == pytest.approx(-1.0)
    assert gen.usage.prompt_tokens == 11
    assert gen.usage.completion_tokens == 7
    assert gen.usage.calls == 1
    assert gen.usage.flops == 2 * 1000 * 18
    assert gen.usage.ended_at >= gen.usage.started_at


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_retryable_status_is_retried_and_usage_counted_once(status):
    server = Server(script=[(status, {"error": {"message": "busy"}})] * 2)
    backend = make_backend(server, max_retries=3)
    gen = await backend.generate(CHAT)
    assert len(server.posts) == 3
    assert gen.usage.calls == 1
    assert gen.usage.completion_tokens == 7


async def test_connection_error_is_retried():
    server = Server(script=[(0, httpx.ConnectError("refused"))])
    gen = await make_backend(server).generate(CHAT)
    assert len(server.posts) == 2
    assert gen.usage.calls == 1


async def test_retries_are_capped():
    server = Server(script=[(503, {"error": {"message": "overloaded"}})] * 10)
    backend = make_backend(server, max_retries=2)
    with pytest.raises(BackendError, match="HTTP 503: overloaded") as info:
        await backend.generate(CHAT)
    assert info.value.retryable
    assert len(server.posts) == 3


async def test_client_error_is_not_retried_and_carries_the_server_message():
    msg = "max_tokens=5000 cannot be greater than max_model_len=2048"
    server = Server(script=[(400, {"error": {"message": msg, "type": "BadRequestError"}})])
    with pytest.raises(BackendError) as info:
        await make_backend(server).generate(CHAT)
    assert msg in str(info.value)
    assert info.value.status == 400
    assert not info.value.retryable
    assert len(server.posts) == 1


async def test_tools_on_a_server_without_tool_calling_say_how_to_serve_one_that_has_it():
    msg = '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
    server = Server(script=[(400, {"error": {"message": msg, "type": "BadRequestError"}})])
    with pytest.raises(BackendError, match=r"started without tool calling.*--model qwen2\.5-coder"):
        await make_backend(server).generate(CHAT)


async def test_dead_engine_stops_retrying_at_once():
    server = Server(script=[(500, {"error": {"message": "EngineCore died"}})] * 10, health=503)
    with pytest.raises(EngineDeadError, match="restart the server"):
        await make_backend(server, max_retries=5).generate(CHAT)
    assert len(server.posts) == 1
    assert server.health_checks == 1


async def test_model_not_served_lists_the_served_ones():
    backend = make_backend(Server(), model="big")
    with pytest.raises(ConfigError, match="does not serve the model 'big'; it serves: tiny"):
        await backend.check()


async def test_default_model_is_the_first_served():
    backend = make_backend(Server())
    assert await backend.check() == "tiny"


async def test_a_server_that_is_not_openai_compatible():
    client = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(404, text="nope"))
    )
    backend = VLLMBackend(BASE, http_client=client)
    with pytest.raises(ConfigError, match="not an OpenAI-compatible server"):
        await backend.check()


async def test_unreachable_server():
    def refuse(request):
        raise httpx.ConnectError("connection refused")

    backend = VLLMBackend(
        BASE, http_client=httpx.AsyncClient(transport=httpx.MockTransport(refuse))
    )
    with pytest.raises(BackendError, match=r"cannot reach a model server at http://vllm\.test/v1"):
        await backend.check()


async def test_tokenize_uses_the_server_root():
    assert await make_backend(Server()).tokenize("abc") == [5, 6, 7]


def test_bad_constructor_options():
    with pytest.raises(ConfigError, match="http"):
        VLLMBackend("localhost:8000")
    with pytest.raises(ConfigError, match="max_concurrency"):
        VLLMBackend(BASE, max_concurrency=0)


def test_sampling_params_validation_lists_every_problem():
    with pytest.raises(ConfigError) as info:
        SamplingParams(temperature=-1, max_tokens=0)
    assert "temperature" in str(info.value)
    assert "max_tokens" in str(info.value)


class Starting(Server):
    """A server still loading: `/v1/models` fails (`models_script`: a status or an exception
    per call) before it answers."""

    def __init__(self, *models_script, **kwargs):
        super().__init__(**kwargs)
        self.models_script = list(models_script)
        self.models_calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            self.models_calls += 1
            if self.models_script:
                answer = self.models_script.pop(0)
                if isinstance(answer, Exception):
                    raise answer
                return httpx.Response(answer, text="loading")
        return super().__call__(request)


async def test_the_first_contact_is_retried_while_the_server_starts():
    server = Starting(httpx.ConnectError("refused"), 503, httpx.ConnectError("refused"))
    assert await make_backend(server, max_retries=3).check() == "tiny"
    assert server.models_calls == 4


async def test_the_first_contact_gives_up_after_the_retries_naming_the_server():
    server = Starting(*[httpx.ConnectError("refused")] * 3)
    with pytest.raises(BackendError, match=r"cannot reach a model server.*gave up after 3"):
        await make_backend(server, max_retries=2).check()
    assert server.models_calls == 3


async def test_with_retry_for_s_a_dead_engine_is_waited_for():
    # Behind a router /health fails while one replica is down; the next attempt may reach
    # another. Without retry_for_s the first such answer stops the request (test above).
    dead = (500, {"error": {"message": "EngineCore died"}})
    server = Server(script=[dead, dead], health=503)
    gen = await make_backend(server, max_retries=0, retry_for_s=30).generate(CHAT)
    assert len(gen.completions) == 2
    assert len(server.posts) == 3


@pytest.fixture
def clients_made(monkeypatch):
    """Every HTTP client a backend makes for itself, answered by a fake server."""
    made: list[httpx.AsyncClient] = []

    class Recorded(httpx.AsyncClient):
        def __init__(self, **options):
            super().__init__(transport=httpx.MockTransport(Server()), **options)
            made.append(self)

    monkeypatch.setattr(httpx, "AsyncClient", Recorded)
    return made


def test_aclose_closes_the_clients_of_the_callers_loop_and_of_synchronous_calls(clients_made):
    backend = VLLMBackend(BASE)
    graph = create_best_of_n_graph(backend, n=2).compile()
    graph.invoke({"question": "q"})  # runs on the library's loop for synchronous callers

    async def run_then_close():
        await graph.ainvoke({"question": "q"})  # this loop's own client
        await backend.aclose()

    asyncio.run(run_then_close())
    assert len(clients_made) == 2
    assert all(client.is_closed for client in clients_made)


def test_a_backend_used_synchronously_closes_as_a_context_manager(clients_made):
    with VLLMBackend(BASE) as backend:
        create_best_of_n_graph(backend, n=2).compile().invoke({"question": "q"})
    assert len(clients_made) == 1 and clients_made[0].is_closed
    # It can be used again: a new client.
    create_best_of_n_graph(backend, n=2).compile().invoke({"question": "q"})
    backend.close()
    assert len(clients_made) == 2 and clients_made[1].is_closed
