"""Daemon address resolution, the docker CLI's way: ``-H`` flag, then ``$DOCKER_HOST``, then the default."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiodock.config import DEFAULT_HOST


@dataclass(frozen=True, slots=True)
class Host:
    """A parsed daemon address: ``unix:///path`` or ``tcp://host:port`` (http only, no TLS)."""

    url: str
    scheme: str  # "unix" or "tcp"
    path: str = ""  # unix socket path
    hostname: str = ""
    port: int = 0

    @property
    def base_url(self) -> str:
        if self.scheme == "unix":
            return "http://docker"
        return f"http://{self.hostname}:{self.port}"


def resolve_host(flag: str | None = None, environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return flag or env.get("DOCKER_HOST") or DEFAULT_HOST


def parse_host(url: str) -> Host:
    if url.startswith("/"):
        url = "unix://" + url
    if "://" not in url:
        url = "tcp://" + url
    parts = urlsplit(url)
    if parts.scheme == "unix":
        path = parts.path or parts.netloc
        if not path:
            raise ValueError(f"invalid host {url!r}: empty socket path")
        return Host(url=url, scheme="unix", path=path)
    if parts.scheme in ("tcp", "http"):
        if not parts.hostname:
            raise ValueError(f"invalid host {url!r}: no host name")
        return Host(url=url, scheme="tcp", hostname=parts.hostname, port=parts.port or 2375)
    raise ValueError(f"invalid host {url!r}: unsupported protocol {parts.scheme!r} (use unix:// or tcp://)")
