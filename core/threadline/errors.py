"""Every error threadline raises derives from :class:`ThreadlineError`.

Catch the base class to handle anything from threadline, or a leaf to react to
one condition. Messages never contain API keys or database passwords::

    ThreadlineError
    ├── ValidationError            bad input: invalid id, role, size, encoding (also ValueError)
    ├── NotFoundError              the id does not exist for this tenant (also LookupError)
    ├── ConflictError              the write contradicts stored data (id reused, version taken)
    ├── ConfigurationError         a setting, URL or agent config cannot be used
    │   ├── PluginNotInstalledError  a URL scheme or provider no installed plugin serves
    │   └── StoreNotFoundError     no store at the URL, and it was opened not to create one
    ├── StoreError                 a store failed; nothing half-written
    │   └── StoreUnavailableError  the store cannot be reached (down, timed out, locked)
    │       └── PoolTimeoutError   every pooled connection stayed busy for the whole wait
    └── ProviderError              the model provider failed
        ├── AuthenticationError    401/403: the key was refused
        ├── ModelNotFoundError     the model does not exist on this endpoint
        ├── RateLimitError         429, after the retries allowed
        ├── ProviderServerError    5xx or another unexpected status, after the retries allowed
        ├── ProviderTimeoutError   connect or read timed out
        └── StreamError            the stream broke off, was malformed or carried an error object
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "ModelNotFoundError",
    "NotFoundError",
    "PluginNotInstalledError",
    "PoolTimeoutError",
    "ProviderError",
    "ProviderServerError",
    "ProviderTimeoutError",
    "RateLimitError",
    "StoreError",
    "StoreNotFoundError",
    "StoreUnavailableError",
    "StreamError",
    "ThreadlineError",
    "ValidationError",
]


class ThreadlineError(Exception):
    """Base class of every error raised by threadline and its plugins."""


class ValidationError(ThreadlineError, ValueError):
    """Input that cannot be stored or used as given; nothing was written."""


class NotFoundError(ThreadlineError, LookupError):
    """The object does not exist, or belongs to another tenant (the two look the same)."""


class ConflictError(ThreadlineError):
    """The write contradicts what is stored, e.g. a message id reused in another session.

    An id held by another row gets one neutral message per kind of id ("... id X cannot
    be used here: use a new id"), the same whichever tenant holds the row: it never tells
    another tenant's data apart from the caller's own.
    """


class ConfigurationError(ThreadlineError):
    """A URL, setting or agent configuration cannot be used."""


class PluginNotInstalledError(ConfigurationError):
    """No installed plugin serves this URL scheme or provider name."""


class StoreNotFoundError(ConfigurationError):
    """No store exists at the URL and it was opened with ``create=False`` (nothing was created)."""


class StoreError(ThreadlineError):
    """A store operation failed; the store holds what it held before."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached: server down, timeout, or a lock held too long."""


class PoolTimeoutError(StoreUnavailableError):
    """No pooled connection came free within the wait: the pool (``pool_size``) is too small
    for the load, or connections are held too long. The server itself may be fine."""

    def __init__(self, message: str, pool_size: int | None = None) -> None:
        super().__init__(message)
        self.pool_size = pool_size


class ProviderError(ThreadlineError):
    """The model provider failed. ``status_code`` and ``code`` are set when known."""

    def __init__(
        self, message: str, *, status_code: int | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code


class AuthenticationError(ProviderError):
    """The provider refused the credentials (401/403)."""


class ModelNotFoundError(ProviderError):
    """The requested model does not exist on this endpoint."""


class RateLimitError(ProviderError):
    """The provider kept answering 429 after the retries allowed."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = 429,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, code=code)
        self.retry_after = retry_after


class ProviderServerError(ProviderError):
    """The provider answered 5xx (or another unexpected status) after the retries allowed."""


class ProviderTimeoutError(ProviderError):
    """Connecting to or reading from the provider timed out."""


class StreamError(ProviderError):
    """The response stream broke off, was malformed, or carried an ``error`` object."""
