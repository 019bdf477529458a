"""The committed aiodock/_proto/ is exactly what scripts/gen_protos.py generates from protos/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_matches_protos() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "gen_protos.py"), "--check"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "up to date" in result.stdout


def test_events_module_exposes_what_the_shim_uses() -> None:
    from datetime import UTC, datetime

    from aiodock._proto.containerd.events import TaskExit
    from aiodock._proto.containerd.services.events.v1 import Envelope, EventsStub, ForwardRequest
    from aiodock._proto.google.protobuf import Any

    exited = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    event = TaskExit(container_id="c1", id="c1", pid=42, exit_status=137, exited_at=exited)
    request = ForwardRequest(
        envelope=Envelope(
            timestamp=exited, namespace="moby", topic="/tasks/exit",
            event=Any(type_url="containerd.events.TaskExit", value=bytes(event)),
        )
    )
    decoded = ForwardRequest.parse(bytes(request))
    assert decoded.envelope is not None and decoded.envelope.event is not None
    assert TaskExit.parse(decoded.envelope.event.value).exit_status == 137
    assert hasattr(EventsStub, "forward")
