"""containerd.services.version.v1.Version: the containerd API level we speak, tagged as aiodock."""

from __future__ import annotations

import aiodock
from aiodock._proto.containerd.services.version.v1 import VersionBase, VersionResponse
from aiodock._proto.google.protobuf import Empty
from aiodock.grpc.errors import grpc_service

# The containerd release whose API (and ctr behaviour) we follow; semver build metadata names us.
CONTAINERD_COMPAT_VERSION = "1.7.0"
VERSION = f"{CONTAINERD_COMPAT_VERSION}+aiodock.{aiodock.__version__}"
REVISION = f"aiodock-{aiodock.__version__}"


@grpc_service
class VersionService(VersionBase):
    def __init__(self, version: str = VERSION, revision: str = REVISION) -> None:
        self._version = version
        self._revision = revision

    async def version(self, message: Empty) -> VersionResponse:
        return VersionResponse(version=self._version, revision=self._revision)
