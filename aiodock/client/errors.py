"""Errors raised by the Engine API client."""

from __future__ import annotations

import json


class ClientError(Exception):
    """An error answer from the daemon (``status`` is the HTTP status, ``message`` its JSON "message")."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return self.message

    @classmethod
    def from_body(cls, status: int, body: bytes) -> ClientError:
        text = body.decode("utf-8", "replace").strip()
        try:
            data = json.loads(text)
        except ValueError:
            return cls(status, text or f"HTTP {status}")
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            return cls(status, data["message"])
        return cls(status, text)


class DaemonUnreachable(ClientError):
    """Nothing answers at the daemon address (the docker CLI's "Cannot connect" error)."""

    def __init__(self, host: str, detail: str = "") -> None:
        super().__init__(0, f"Cannot connect to the Docker daemon at {host}. Is the docker daemon running?")
        self.detail = detail
