"""Report a container exit to the daemon: containerd.services.events.v1.Events/Forward over its gRPC socket.

exit.json is already durable when this runs, so a lost report is recoverable; still, retry with backoff
(0.1 s growing to 2 s) until the daemon answers (a gRPC status other than UNAVAILABLE counts as an answer).
The caller cancels the task on delete/shutdown. grpclib and the
generated code are imported here lazily; the factory pre-imports them so forked shims share the pages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC

from aiodock.shim.protocol import ExitRecord, parse_timestamp

TOPIC_TASK_EXIT = "/tasks/exit"
TASK_EXIT_TYPE_URL = "containerd.events.TaskExit"
CALL_TIMEOUT = 5.0
BACKOFF_START = 0.1
BACKOFF_MAX = 2.0


def preload() -> None:
    """Import what forward_exit needs (called by the factory before it forks shims)."""
    import grpclib.client  # noqa: F401

    import aiodock._proto.containerd.events  # noqa: F401
    import aiodock._proto.containerd.services.events.v1  # noqa: F401
    import aiodock._proto.google.protobuf  # noqa: F401


async def forward_exit(
    grpc_address: str, namespace: str, container_id: str, record: ExitRecord, log: Callable[[str], None]
) -> None:
    from datetime import datetime

    from grpclib.client import Channel
    from grpclib.const import Status
    from grpclib.exceptions import GRPCError

    from aiodock._proto.containerd.events import TaskExit
    from aiodock._proto.containerd.services.events.v1 import Envelope, EventsStub, ForwardRequest
    from aiodock._proto.google.protobuf import Any

    exited_at = parse_timestamp(record.exited_at)
    event = TaskExit(
        container_id=container_id, id=container_id, pid=record.pid, exit_status=record.exit_status,
        exited_at=exited_at,
    )
    request = ForwardRequest(envelope=Envelope(
        timestamp=datetime.now(UTC), namespace=namespace, topic=TOPIC_TASK_EXIT,
        event=Any(type_url=TASK_EXIT_TYPE_URL, value=bytes(event)),
    ))
    delay = BACKOFF_START
    attempt = 0
    while True:
        attempt += 1
        channel = Channel(path=grpc_address)
        try:
            await EventsStub(channel).forward(request, timeout=CALL_TIMEOUT)
            log(f"exit of {container_id} forwarded to {grpc_address}")
            return
        except asyncio.CancelledError:
            raise
        except GRPCError as exc:
            if exc.status != Status.UNAVAILABLE:  # the daemon answered: it has heard of us, even if it refused
                log(f"daemon refused the exit of {container_id}: {exc.status.name} {exc.message}")
                return
            log(f"forwarding exit to {grpc_address}: {exc.status.name} (attempt {attempt})")
        except Exception as exc:  # noqa: BLE001 - the daemon may be down or restarting: retry
            if attempt == 1 or attempt % 30 == 0:
                log(f"forwarding exit to {grpc_address} failed (attempt {attempt}): {exc!r}")
        finally:
            channel.close()
        await asyncio.sleep(delay)
        delay = min(delay * 2, BACKOFF_MAX)
