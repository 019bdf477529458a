"""Domain errors shared by every layer (the containerd errdefs set).

Each transport maps them once: the Engine API to an HTTP status with a JSON {"message": ...} body,
the gRPC manager to a grpc Status. Nothing else should decide status codes.
"""

from __future__ import annotations


class AiodockError(Exception):
    """Base of every error aiodock raises on purpose. ``str(err)`` is the user-facing message."""

    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(AiodockError):
    """Bad input from the caller (HTTP 400, gRPC INVALID_ARGUMENT)."""

    http_status = 400


class NotFound(AiodockError):
    """No such object (HTTP 404, gRPC NOT_FOUND)."""

    http_status = 404


class AlreadyExists(AiodockError):
    """An object of that name exists (HTTP 409, gRPC ALREADY_EXISTS)."""

    http_status = 409


class Conflict(AiodockError):
    """The object is in a state that forbids the operation (HTTP 409, gRPC FAILED_PRECONDITION)."""

    http_status = 409


class FailedPrecondition(AiodockError):
    """The system is not in a state for the operation (HTTP 409/500, gRPC FAILED_PRECONDITION)."""

    http_status = 409


class NotModified(AiodockError):
    """Nothing to do (HTTP 304), e.g. starting a running container."""

    http_status = 304


class Unavailable(AiodockError):
    """A dependency (shim, runtime, registry) cannot be reached (HTTP 503, gRPC UNAVAILABLE)."""

    http_status = 503


class NotImplementedYet(AiodockError):
    """The operation exists in Docker/containerd but aiodock does not serve it (HTTP 501, gRPC UNIMPLEMENTED)."""

    http_status = 501


class RuntimeFailure(AiodockError):
    """The OCI runtime refused to create or start a container (HTTP 400 like Docker's 'failed to create task')."""

    http_status = 400


class InternalError(AiodockError):
    """A real internal fault (HTTP 500, gRPC INTERNAL)."""

    http_status = 500
