"""aiodock.errors -> gRPC status, the way containerd's errgrpc maps errdefs.

Service classes are decorated with ``@grpc_service``: every public coroutine (or async generator) method defined on
the class translates domain errors into ``GRPCError`` with the error's message, so ctr prints the same text
containerd would (e.g. ``container "x" in namespace "moby": not found``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import structlog
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from aiodock import errors

log = structlog.get_logger(__name__)

_STATUS_BY_ERROR: tuple[tuple[type[errors.AiodockError], Status], ...] = (
    (errors.NotFound, Status.NOT_FOUND),
    (errors.AlreadyExists, Status.ALREADY_EXISTS),
    (errors.InvalidArgument, Status.INVALID_ARGUMENT),
    (errors.Conflict, Status.FAILED_PRECONDITION),
    (errors.FailedPrecondition, Status.FAILED_PRECONDITION),
    (errors.NotModified, Status.FAILED_PRECONDITION),
    (errors.Unavailable, Status.UNAVAILABLE),
    (errors.NotImplementedYet, Status.UNIMPLEMENTED),
)


def status_for(exc: BaseException) -> Status:
    """The gRPC status code for a domain error (INTERNAL for anything unexpected)."""
    for error_type, status in _STATUS_BY_ERROR:
        if isinstance(exc, error_type):
            return status
    return Status.INTERNAL


def to_grpc_error(exc: Exception) -> GRPCError:
    if isinstance(exc, GRPCError):
        return exc
    if not isinstance(exc, errors.AiodockError):
        log.error("grpc_internal_error", error=repr(exc), exc_info=exc)
    return GRPCError(status_for(exc), str(exc) or type(exc).__name__)


@contextmanager
def translated_errors() -> Iterator[None]:
    """Re-raise any exception (but cancellation) as a GRPCError."""
    try:
        yield
    except GRPCError:
        raise
    except Exception as exc:
        raise to_grpc_error(exc) from exc


F = TypeVar("F", bound=Callable[..., Any])


def translate_errors(method: F) -> F:
    """Wrap one handler (coroutine function or async generator function)."""
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream_wrapper(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            with translated_errors():
                async for item in method(*args, **kwargs):
                    yield item

        return stream_wrapper  # type: ignore[return-value]

    @functools.wraps(method)
    async def unary_wrapper(*args: Any, **kwargs: Any) -> Any:
        with translated_errors():
            return await method(*args, **kwargs)

    return unary_wrapper  # type: ignore[return-value]


C = TypeVar("C", bound=type)


def grpc_service(cls: C) -> C:
    """Class decorator: translate errors in every public async handler the class itself defines."""
    for name, value in list(vars(cls).items()):
        if name.startswith("_"):
            continue
        if inspect.iscoroutinefunction(value) or inspect.isasyncgenfunction(value):
            setattr(cls, name, translate_errors(value))
    return cls
