"""Health checks: HEALTHCHECK from the image or --health-* flags, run through exec, kept in State.Health.

Docker's rules: the status is "starting" until a check passes (failures during the start period do not count),
"healthy" after a pass, "unhealthy" after `retries` consecutive failures; the last five results are kept;
every status change is a `health_status: <status>` event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiodock.engine.containers import ContainerService
from aiodock.engine.exec import ExecService
from aiodock.engine.state import rfc3339nano
from aiodock.errors import AiodockError
from aiodock.log import get_logger

log = get_logger("aiodock.engine.health")

NS = 1_000_000_000
DEFAULT_INTERVAL = 30 * NS
DEFAULT_TIMEOUT = 30 * NS
DEFAULT_START_INTERVAL = 5 * NS
DEFAULT_RETRIES = 3
MAX_LOG_ENTRIES = 5
MAX_OUTPUT = 4096


def effective_healthcheck(config: dict[str, Any]) -> dict[str, Any] | None:
    """The container's Healthcheck (already merged with the image's), or None when there is none or it is NONE."""
    check = config.get("Healthcheck") or {}
    test = check.get("Test") or []
    if not test or test[0] == "NONE":
        return None
    return check


def command_of(test: list[str]) -> list[str]:
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    if test[0] == "CMD":
        return list(test[1:])
    return list(test)


class HealthMonitor:
    """One checking task per running container that has a health check."""

    def __init__(self, *, containers: ContainerService, execs: ExecService,
                 emit: Callable[[str, str], None]) -> None:
        self._containers = containers
        self._execs = execs
        self._emit = emit
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, container_id: str) -> None:
        container = self._containers.get(container_id)
        check = effective_healthcheck(container.config)
        if check is None:
            return
        self.stop(container_id)
        self._tasks[container_id] = asyncio.create_task(self._run(container_id, check))

    def stop(self, container_id: str) -> None:
        task = self._tasks.pop(container_id, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, container_id: str, check: dict[str, Any]) -> None:
        interval = (check.get("Interval") or DEFAULT_INTERVAL) / NS
        timeout = (check.get("Timeout") or DEFAULT_TIMEOUT) / NS
        start_period = (check.get("StartPeriod") or 0) / NS
        start_interval = (check.get("StartInterval") or DEFAULT_START_INTERVAL) / NS
        retries = check.get("Retries") or DEFAULT_RETRIES
        command = command_of(check["Test"])
        loop = asyncio.get_running_loop()
        began = loop.time()
        await self._containers.set_health(container_id, {"Status": "starting", "FailingStreak": 0, "Log": []})
        try:
            while True:
                in_start_period = loop.time() - began < start_period
                await asyncio.sleep(start_interval if in_start_period else interval)
                in_start_period = loop.time() - began < start_period
                entry = await self._probe(container_id, command, timeout)
                container = self._containers.get(container_id)
                health = dict(container.state.health or {"Status": "starting", "FailingStreak": 0, "Log": []})
                previous = health["Status"]
                health["Log"] = (list(health.get("Log") or []) + [entry])[-MAX_LOG_ENTRIES:]
                if entry["ExitCode"] == 0:
                    health["Status"], health["FailingStreak"] = "healthy", 0
                elif not (in_start_period and previous == "starting"):
                    health["FailingStreak"] = int(health.get("FailingStreak") or 0) + 1
                    if health["FailingStreak"] >= retries:
                        health["Status"] = "unhealthy"
                await self._containers.set_health(container_id, health)
                if health["Status"] != previous:
                    self._emit(container_id, f"health_status: {health['Status']}")
        except asyncio.CancelledError:
            raise
        except AiodockError as exc:  # the container went away
            log.debug("health checks end", container=container_id, reason=str(exc))

    async def _probe(self, container_id: str, command: list[str], timeout: float) -> dict[str, Any]:
        start = rfc3339nano()
        output = bytearray()
        try:
            exec_id = await self._execs.create(container_id, {"Cmd": command, "AttachStdout": True,
                                                               "AttachStderr": True})
            started = await self._execs.start(exec_id)
            assert started is not None
            _tty, chunks, _stdin = started
            async with asyncio.timeout(timeout):
                async for chunk in chunks:
                    output += chunk.data[: max(0, MAX_OUTPUT - len(output))]
            code = (await self._execs.inspect(exec_id)).get("ExitCode")
            exit_code = int(code) if code is not None else -1
        except TimeoutError:
            output = bytearray(f"Health check exceeded timeout ({timeout:g}s)".encode())
            exit_code = -1
        except AiodockError as exc:
            output = bytearray(str(exc).encode())
            exit_code = -1
        return {"Start": start, "End": rfc3339nano(), "ExitCode": exit_code,
                "Output": output.decode(errors="replace")}
