"""Settings of the provider: API key (literal or ``env:NAME`` reference), base URL, model.

Defaults come from ``OPENAI_API_KEY``, ``OPENAI_BASE_URL`` and ``OPENAI_MODEL``. The key
is held in a :class:`Secret`, whose ``repr`` and ``str`` never show it, and no error
message here quotes a key or a reference that might be one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import final

import httpx

from threadline.errors import ConfigurationError

__all__ = [
    "API_KEY_ENV",
    "BASE_URL_ENV",
    "DEFAULT_BASE_URL",
    "MODEL_ENV",
    "Secret",
    "display_url",
    "endpoint_url",
    "resolve_api_key",
    "resolve_base_url",
    "resolve_model",
]

API_KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"
MODEL_ENV = "OPENAI_MODEL"
DEFAULT_BASE_URL = "https://api.openai.com/v1"


@final
class Secret:
    """A string that does not show itself: ``repr``/``str`` give ``'***'``; use :meth:`reveal`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that must send it."""
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret cannot be pickled")


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def resolve_api_key(
    api_key: str | None, api_key_ref: str | None, environ: Mapping[str, str] | None = None
) -> Secret | None:
    """The API key from ``api_key``, else ``api_key_ref``, else ``OPENAI_API_KEY``.

    ``api_key_ref`` is ``env:NAME`` (read variable NAME) or, as a stored agent config may
    hold, the key itself.

    :raises ConfigurationError: both were given, or the referenced variable is unset.
    """
    environ = os.environ if environ is None else environ
    if api_key is not None and api_key_ref is not None:
        raise ConfigurationError("give api_key or api_key_ref, not both")
    if api_key is not None:
        return Secret(api_key) if api_key.strip() else None
    if api_key_ref is not None:
        ref = api_key_ref.strip()
        if ref.startswith("env:"):
            name = ref[4:].strip()
            if not name:
                raise ConfigurationError("api_key_ref 'env:' names no environment variable")
            value = _env(environ, name)
            if value is None:
                raise ConfigurationError(
                    f"api_key_ref names environment variable {name!r}, which is not set"
                )
            return Secret(value)
        return Secret(ref) if ref else None
    value = _env(environ, API_KEY_ENV)
    return None if value is None else Secret(value)


def resolve_base_url(
    base_url: str | None, environ: Mapping[str, str] | None = None
) -> tuple[str, bool]:
    """The base URL (no trailing slash) and whether it was chosen rather than defaulted.

    :raises ConfigurationError: it is not an ``http://`` or ``https://`` URL.
    """
    environ = os.environ if environ is None else environ
    chosen = base_url if base_url is not None else _env(environ, BASE_URL_ENV)
    url = (chosen or DEFAULT_BASE_URL).strip().rstrip("/")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigurationError(
            "base_url must be an http:// or https:// URL such as "
            f"{DEFAULT_BASE_URL} or http://localhost:11434/v1"
        )
    return url, chosen is not None


def resolve_model(model: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The default model: ``model``, else ``OPENAI_MODEL``, else ``None``."""
    environ = os.environ if environ is None else environ
    if model is not None and model.strip():
        return model.strip()
    return _env(environ, MODEL_ENV)


def display_url(url: str) -> str:
    """``url`` without user info or query, fit for messages (either may hold a secret)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<invalid URL>"
    return str(parsed.copy_with(username=None, password=None, query=None, fragment=None))


def endpoint_url(base_url: str, path: str) -> str:
    """``base_url`` with ``path`` appended to its path; a query string (``?api-version=``) stays."""
    url = httpx.URL(base_url)
    return str(url.copy_with(path=url.path.rstrip("/") + "/" + path.lstrip("/")))
