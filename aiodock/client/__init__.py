"""Clients of the aiodock daemon: ``DockerClient`` (Engine API) and ``ContainerdClient`` (gRPC, in ``ctr``)."""

from aiodock.client.docker import DockerClient
from aiodock.client.errors import ClientError, DaemonUnreachable
from aiodock.client.host import Host, parse_host, resolve_host

__all__ = ["ClientError", "DaemonUnreachable", "DockerClient", "Host", "parse_host", "resolve_host"]
