"""Domain errors of the emulator, each knowing its wire shape (reference §5e).

The backend raises these; the app turns any of them into a response with `to_response`. Four shapes:

    CloudApiError   {"error": {"code": "VolumeBackup.0012", "message": "..."}}      VBS cloud APIs, EVS, ECS
    CinderError     {"itemNotFound": {"code": 404, "message": "..."}}              native /backups paths
    GatewayError    {"error_code": "APIGW.0301", "error_msg": "...", "request_id": "..."}   gateway
    KeystoneError   {"error": {"code": 401, "message": "...", "title": "Unauthorized"}}      IAM token API
"""

from __future__ import annotations

import math
from typing import Any


class EmulatorError(Exception):
    status: int = 400

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self, request_id: str) -> dict[str, Any]:  # pragma: no cover - interface
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        return {}


class CloudApiError(EmulatorError):
    """`{"error": {"code", "message"}}`: VBS cloudbackups/backuppolicy/jobs/sharing, EVS and ECS APIs."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(status, message)
        self.code = code

    def body(self, request_id: str) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


class CinderError(EmulatorError):
    """Cinder-style fault: `{"badRequest": {"code": 400, "message": ...}}`."""

    FAULTS = {400: "badRequest", 404: "itemNotFound", 409: "conflictingRequest", 413: "overLimit"}

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message)

    def body(self, request_id: str) -> dict[str, Any]:
        fault = self.FAULTS.get(self.status, "computeFault")
        return {fault: {"code": self.status, "message": self.message}}


class GatewayError(EmulatorError):
    """The API gateway's own answers: authentication, unknown paths, throttling."""

    def __init__(self, status: int, code: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(status, message)
        self.code = code
        self.retry_after = retry_after

    def body(self, request_id: str) -> dict[str, Any]:
        return {"error_code": self.code, "error_msg": self.message, "request_id": request_id}

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        # Rounded up: a caller that waits exactly Retry-After seconds must find a token in the bucket.
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


class KeystoneError(EmulatorError):
    """IAM token API errors (Keystone shape, integer code)."""

    TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}

    def body(self, request_id: str) -> dict[str, Any]:
        return {
            "error": {
                "code": self.status,
                "message": self.message,
                "title": self.TITLES.get(self.status, "Error"),
            }
        }


def vbs(code: str, message: str, status: int = 400) -> CloudApiError:
    """Shorthand used by the VBS backend: `raise vbs("VolumeBackup.0012", "...")`."""
    return CloudApiError(code, message, status)


def gateway_not_found() -> GatewayError:
    return GatewayError(
        404, "APIGW.0101", "The API does not exist or has not been published in the environment"
    )
