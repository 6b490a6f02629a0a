"""API keys for the model servers: read once, held as pydantic ``SecretStr``, sent only in the
``Authorization`` header, and never written into a message, a log line, a repr or a trace.

A key comes from the caller (``api_key=``, a ``str`` or a ``SecretStr``) or, when none is given,
from ``TTS_GRAPH_API_KEY`` and then ``VLLM_API_KEY`` (the variable a vLLM server itself reads for
``--api-key``). ``OPENAI_API_KEY`` is never read: it usually holds a key for OpenAI's service,
which must not be sent to whatever server ``base_url`` names.

Servers may echo what they were sent; every text the library makes from a server's reply goes
through :func:`redact` first.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

from tts_graph.errors import ConfigError

__all__ = [
    "API_KEY_ENV",
    "MASK",
    "auth_headers",
    "cause_without",
    "check_url",
    "redact",
    "resolve_api_key",
]

API_KEY_ENV = ("TTS_GRAPH_API_KEY", "VLLM_API_KEY")
"""Environment variables an unset ``api_key`` is read from, first one set wins."""

MASK = "**********"
"""What a key reads as wherever it would otherwise show (pydantic's own mask)."""


def resolve_api_key(value: str | SecretStr | None, *, what: str = "api_key") -> SecretStr | None:
    """The key to send: ``value``, else the first of :data:`API_KEY_ENV` that is set; None when
    there is none (an empty string means "no key", without looking at the environment).

    >>> resolve_api_key("sk-123")
    SecretStr('**********')
    """
    if value is None:
        for name in API_KEY_ENV:
            if found := os.environ.get(name):
                return SecretStr(found)
        return None
    if isinstance(value, SecretStr):
        key = value
    elif isinstance(value, str):
        key = SecretStr(value)
    else:
        raise ConfigError(
            f"{what} must be a string or a pydantic SecretStr, got {type(value).__name__}"
        )
    return key if key.get_secret_value() else None


def auth_headers(key: SecretStr | None) -> dict[str, str]:
    """The ``Authorization`` header that carries ``key`` (none without a key)."""
    return {"Authorization": f"Bearer {key.get_secret_value()}"} if key is not None else {}


def redact(text: str, *keys: SecretStr | None) -> str:
    """``text`` with every occurrence of each key replaced by :data:`MASK`.

    >>> redact("bad key sk-123", SecretStr("sk-123"))
    'bad key **********'
    """
    for key in keys:
        secret = key.get_secret_value() if key is not None else ""
        if secret:
            text = text.replace(secret, MASK)
    return text


def cause_without(exc: BaseException, *keys: SecretStr | None) -> BaseException | None:
    """``exc`` to chain a library error to (``raise err from cause_without(exc, key)``), or
    None when its message, or that of an exception chained to it, holds a key: a traceback
    prints every chained exception's message."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        shown = f"{current}\n{current!r}"
        if redact(shown, *keys) != shown:
            return None
        current = current.__cause__ or current.__context__
    return exc


def check_url(url: str, *, what: str = "base_url") -> None:
    """Raise :class:`~tts_graph.errors.ConfigError` when ``url`` carries credentials
    (``http://user:password@host``): a URL is shown in messages, logs and saved specs, so a key
    goes in ``api_key`` (or :data:`API_KEY_ENV`) instead.

    >>> check_url("http://user:pw@127.0.0.1:8000/v1")
    Traceback (most recent call last):
    ...
    tts_graph.errors.ConfigError: base_url must not carry credentials (user:password@): give the key as api_key= or in TTS_GRAPH_API_KEY, and the URL without them: http://127.0.0.1:8000/v1
    """
    try:
        parts = urlsplit(url)
        userinfo = parts.username is not None or parts.password is not None
    except ValueError:  # a malformed URL is left to the client to report
        return
    if not userinfo:
        return
    host = parts.netloc.rsplit("@", 1)[1]
    bare = urlunsplit(parts._replace(netloc=host))
    raise ConfigError(
        f"{what} must not carry credentials (user:password@): give the key as api_key= or in "
        f"{API_KEY_ENV[0]}, and the URL without them: {bare}"
    )
