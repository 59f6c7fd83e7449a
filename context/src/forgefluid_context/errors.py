"""Errors that cross the transporter as Moleculer errors.

A TS caller rebuilds an error from its `name` (Moleculer's error regenerator knows MoleculerError,
MoleculerClientError, MoleculerServerError, RequestTimeoutError, ...), so the name, the numeric `code`
(an HTTP status), the string `type` (the stable code such as PROJECT_NOT_FOUND) and `data` all survive.
"""

from __future__ import annotations

from typing import Any


class MoleculerError(Exception):
    """An error with Moleculer's fields; `name` picks the class the TS side recreates."""

    def __init__(
        self,
        message: str,
        code: int = 500,
        type: str = "INTERNAL_ERROR",
        data: Any = None,
        *,
        name: str | None = None,
        retryable: bool = False,
        node_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.type = type
        self.data = data
        self.retryable = retryable
        self.node_id = node_id
        self.name = name or ("MoleculerClientError" if 400 <= code < 500 else "MoleculerError")

    def to_plain(self, node_id: str) -> dict[str, Any]:
        """The `error` field of a RES packet (what Moleculer's extractPlainError produces)."""
        return {
            "name": self.name,
            "message": self.message,
            "code": self.code,
            "type": self.type,
            "data": self.data,
            "retryable": self.retryable,
            "nodeID": self.node_id or node_id,
        }

    @classmethod
    def from_plain(cls, plain: dict[str, Any], sender: str | None) -> MoleculerError:
        code = plain.get("code")
        return cls(
            str(plain.get("message", "Remote error")),
            code if isinstance(code, int) else 500,
            str(plain.get("type") or "REMOTE_ERROR"),
            plain.get("data"),
            name=str(plain.get("name") or "MoleculerError"),
            retryable=bool(plain.get("retryable", False)),
            node_id=plain.get("nodeID") or sender,
        )


def client_error(message: str, code: int, type: str, data: Any = None) -> MoleculerError:
    return MoleculerError(message, code, type, data, name="MoleculerClientError")


def validation_error(message: str, details: list[dict[str, Any]]) -> MoleculerError:
    """422 VALIDATION_ERROR with the contract's `[{ field, message, type }]` details."""
    return client_error(message, 422, "VALIDATION_ERROR", details)


def _retryable(name: str, status: int, code: str, message: str, data: dict[str, Any]) -> MoleculerError:
    """One of Moleculer's retryable transit errors, with the name and message Moleculer gives it."""
    return MoleculerError(message, status, code, data, name=name, retryable=True)


def request_timeout(action: str, node_id: str | None) -> MoleculerError:
    return _retryable(
        "RequestTimeoutError",
        504,
        "REQUEST_TIMEOUT",
        f"Request is timed out when call '{action}' action on '{node_id}' node.",
        {"action": action, "nodeID": node_id},
    )


def service_not_found(action: str) -> MoleculerError:
    return _retryable(
        "ServiceNotFoundError", 404, "SERVICE_NOT_FOUND", f"Service '{action}' is not found.", {"action": action}
    )


def service_not_available(action: str, node_id: str | None) -> MoleculerError:
    return _retryable(
        "ServiceNotAvailableError",
        404,
        "SERVICE_NOT_AVAILABLE",
        f"Service '{action}' is not available on '{node_id}' node.",
        {"action": action, "nodeID": node_id},
    )
