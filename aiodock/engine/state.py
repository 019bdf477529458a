"""Docker's per-container records and their files under <data-root>/containers/<id>/.

config.v2.json holds the Container document (Docker's field names), hostconfig.json the HostConfig; both are
written atomically. Records are frozen: every change makes a new record with dataclasses.replace.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiodock.util import atomicfile

ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339nano(when: datetime | None = None) -> str:
    when = (when or datetime.now(UTC)).astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond:06d}000Z"


def parse_rfc3339(value: str) -> datetime:
    if not value or value.startswith("0001-"):
        return datetime.fromtimestamp(0, UTC)
    main, _, frac = value.rstrip("Z").partition(".")
    micro = int((frac + "000000")[:6]) if frac else 0
    return datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(microsecond=micro, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ContainerState:
    status: str = "created"  # created, running, paused, restarting, removing, exited, dead
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    oom_killed: bool = False
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    health: dict[str, Any] | None = None  # Docker's State.Health {Status, FailingStreak, Log}

    @property
    def running(self) -> bool:
        return self.status in ("running", "paused", "restarting")

    def to_docker(self) -> dict[str, Any]:
        return {
            "Status": self.status,
            "Running": self.status in ("running", "paused"),
            "Paused": self.status == "paused",
            "Restarting": self.status == "restarting",
            "OOMKilled": self.oom_killed,
            "Dead": self.status == "dead",
            "Pid": self.pid,
            "ExitCode": self.exit_code,
            "Error": self.error,
            "StartedAt": self.started_at,
            "FinishedAt": self.finished_at,
            **({"Health": self.health} if self.health is not None else {}),
        }

    @classmethod
    def from_docker(cls, raw: dict[str, Any]) -> ContainerState:
        return cls(
            status=raw.get("Status", "created"), pid=raw.get("Pid", 0), exit_code=raw.get("ExitCode", 0),
            error=raw.get("Error", ""), oom_killed=raw.get("OOMKilled", False),
            started_at=raw.get("StartedAt", ZERO_TIME), finished_at=raw.get("FinishedAt", ZERO_TIME),
            health=raw.get("Health"),
        )


@dataclass(frozen=True, slots=True)
class Container:
    """What Docker keeps in config.v2.json, with the HostConfig beside it."""

    id: str
    name: str  # without the leading slash
    created: str
    path: str
    args: tuple[str, ...]
    config: dict[str, Any]  # Docker's Config (Image, Cmd, Env, ...)
    host_config: dict[str, Any]
    image_id: str
    state: ContainerState = field(default_factory=ContainerState)
    restart_count: int = 0
    has_been_started: bool = False
    manually_stopped: bool = False

    def with_state(self, **changes: Any) -> Container:
        return replace(self, state=replace(self.state, **changes))

    def to_document(self, root: Path) -> dict[str, Any]:
        cdir = root / self.id
        return {
            "ID": self.id,
            "Name": "/" + self.name,
            "Created": self.created,
            "Path": self.path,
            "Args": list(self.args),
            "Config": self.config,
            "ImageID": self.image_id,
            "State": self.state.to_docker(),
            "RestartCount": self.restart_count,
            "HasBeenStartedBefore": self.has_been_started,
            "HasBeenManuallyStopped": self.manually_stopped,
            "Driver": "overlay2",
            "LogPath": str(cdir / f"{self.id}-json.log"),
            "HostnamePath": str(cdir / "hostname"),
            "HostsPath": str(cdir / "hosts"),
            "ResolvConfPath": str(cdir / "resolv.conf"),
        }

    @classmethod
    def from_files(cls, cdir: Path) -> Container:
        doc = atomicfile.read_json(cdir / "config.v2.json")
        host_config = atomicfile.read_json(cdir / "hostconfig.json")
        return cls(
            id=doc["ID"], name=doc["Name"].lstrip("/"), created=doc["Created"], path=doc["Path"],
            args=tuple(doc["Args"]), config=doc["Config"], host_config=host_config, image_id=doc["ImageID"],
            state=ContainerState.from_docker(doc["State"]), restart_count=doc.get("RestartCount", 0),
            has_been_started=doc.get("HasBeenStartedBefore", False),
            manually_stopped=doc.get("HasBeenManuallyStopped", False),
        )


class ContainerFiles:
    """The containers/ folder of the data root. Blocking: call from a thread."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def dir(self, container_id: str) -> Path:
        return self.root / container_id

    def log_path(self, container_id: str) -> Path:
        return self.root / container_id / f"{container_id}-json.log"

    def save(self, container: Container) -> None:
        cdir = self.dir(container.id)
        cdir.mkdir(mode=0o710, exist_ok=True)
        atomicfile.write_json(cdir / "hostconfig.json", container.host_config, mode=0o644)
        atomicfile.write_json(cdir / "config.v2.json", container.to_document(self.root), mode=0o600)

    def load_all(self) -> list[Container]:
        found = []
        for cdir in sorted(self.root.iterdir()):
            if not (cdir / "config.v2.json").exists():
                if cdir.is_dir():
                    shutil.rmtree(cdir, ignore_errors=True)  # half-made by a create that died
                continue
            found.append(Container.from_files(cdir))
        return found

    def remove(self, container_id: str) -> None:
        shutil.rmtree(self.dir(container_id), ignore_errors=True)


def as_dict(container: Container) -> dict[str, Any]:
    return asdict(container)
