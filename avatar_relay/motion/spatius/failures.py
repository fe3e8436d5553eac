"""The retry policy: from an SDK failure (close code, server error, HTTP status), decide whether
and when the source may try again, the vendor's own rules."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ._sdk import spatius

FATAL_CODES: Mapping[int, str] = {
    4001: "credits exhausted",
    4003: "concurrency limit reached",
    4010: "authentication failed",
}
"""Close codes (or server error codes) after which the source never retries by itself.

Every other code in 4000-4499 except 4002 is not retried either, as the vendor's SDK rules
(``spatialreal/errors.py``); these are the ones with a known meaning.
"""
NON_RETRYABLE_CODES = range(4000, 4500)

CONFIGURATION_ERRORS = frozenset(
    {"unsupportedSampleRate", "sessionTokenInvalid", "protocolError", "invalidRequest"}
)
"""SDK error codes that a retry cannot fix: reported once, never retried."""

SESSION_TIMEOUT_CODE = 4002
UPSTREAM_UNAVAILABLE_CODE = 4503

FATAL_TOKEN_STATUS: Mapping[int, str] = {
    401: "api key rejected",
    402: "billing required",
    403: "api key not allowed",
    404: "app id unrecognized",
}
FATAL_UPGRADE_STATUS: Mapping[int, str] = {
    400: "refused the request",
    401: "refused the session key or app id",
    403: "refused the session",
    404: "does not know the avatar",
}
"""HTTP statuses of a refused websocket upgrade: configuration errors, not retried."""

@dataclass(frozen=True, slots=True)
class Failure:
    kind: Literal["fatal", "new_session", "retry"]
    reason: str



class ConnectFailedError(Exception):
    """A session could not be opened; the message is the reason the stream ends with."""



def _code_of(exc: BaseException) -> int | None:
    close_code = getattr(exc, "close_code", None)
    if isinstance(close_code, int):
        return close_code
    server_code = getattr(exc, "server_code", None)
    if isinstance(server_code, str) and server_code.isdigit():
        return int(server_code)
    return None


def classify_failure(exc: BaseException) -> Failure:
    """Decide from an SDK exception whether and when the source may try again."""
    code = _code_of(exc)
    detail = str(getattr(exc, "message", "") or exc) or type(exc).__name__
    if code is not None and code in FATAL_CODES:
        return Failure("fatal", f"spatius {FATAL_CODES[code]} ({code}): {detail}")
    if code == SESSION_TIMEOUT_CODE:
        return Failure("new_session", f"spatius session timeout ({code}): {detail}")
    if code is not None and code in NON_RETRYABLE_CODES:
        return Failure("fatal", f"spatius refused the session ({code}): {detail}")
    status = exc.http_status if isinstance(exc, spatius.SessionTokenError) else None
    if status is not None and status in FATAL_TOKEN_STATUS:
        label = FATAL_TOKEN_STATUS[status]
        return Failure("fatal", f"spatius {label} (HTTP {status}): {detail}")
    status = getattr(exc, "http_status", None)
    if isinstance(status, int) and status in FATAL_UPGRADE_STATUS:
        label = FATAL_UPGRADE_STATUS[status]
        return Failure("fatal", f"spatius {label} (HTTP {status}): {detail}")
    if isinstance(exc, spatius.AvatarSDKError):
        sdk_code = exc.code
        if sdk_code == spatius.AvatarSDKErrorCode.creditsExhausted:
            return Failure("fatal", f"spatius credits exhausted: {detail}")
        if sdk_code in (
            spatius.AvatarSDKErrorCode.billingRequired,
            spatius.AvatarSDKErrorCode.appIDUnrecognized,
            spatius.AvatarSDKErrorCode.appIDMismatch,
            spatius.AvatarSDKErrorCode.avatarNotFound,
        ):
            return Failure("fatal", f"spatius {sdk_code.value}: {detail}")
        if sdk_code == spatius.AvatarSDKErrorCode.sessionDurationExceeded:
            return Failure("new_session", f"spatius session timeout: {detail}")
        if sdk_code.value in CONFIGURATION_ERRORS:
            return Failure("fatal", f"spatius configuration error ({sdk_code.value}): {detail}")
        if sdk_code == spatius.AvatarSDKErrorCode.idleTimeout:
            return Failure("new_session", f"spatius closed the idle session: {detail}")
    if isinstance(exc, asyncio.TimeoutError):
        return Failure("retry", "spatius did not answer in time")
    return Failure("retry", f"spatius unavailable: {detail}")


