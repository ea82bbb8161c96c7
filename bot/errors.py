"""What can go wrong with a model, whichever provider serves it (plain values, no I/O).

The model client raises these; the responder and the notices decide what to do and say.
"""

from __future__ import annotations

from typing import Any

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504, 529})


class LLMError(Exception):
    """An error from the model API, built from its error body."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        error_type: str = "",
        request_id: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type
        self.request_id = request_id
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """Worth the same request again: a limit, an overload, a server error, a lost link."""
        return self.status in RETRYABLE_STATUS or self.status == 0


class AuthenticationError(LLMError):
    """The key is missing, wrong or not allowed to use this model."""


class BadRequestError(LLMError):
    """The request itself is wrong; retrying the same request will not help."""


class PromptTooLongError(BadRequestError):
    def __init__(self, message: str, tokens: int, maximum: int, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.tokens = tokens
        self.maximum = maximum


class RateLimitError(LLMError):
    pass


class OverloadedError(LLMError):
    pass


class UnavailableError(LLMError):
    """A 5xx, a timeout or a connection failure."""


class StreamInterruptedError(LLMError):
    """The stream broke after some text was already delivered."""


class ReplyTimeoutError(UnavailableError):
    """No text within the reply's deadline (every attempt and the fallback included)."""
