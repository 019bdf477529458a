"""pyroute2, loaded on first use: it costs the daemon about 20 MiB, which a daemon whose containers use only
--network host/none (or none yet) does not pay. Blocking."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyroute2 import IPRoute


def iproute() -> IPRoute:
    from pyroute2 import IPRoute

    return IPRoute()


def netlink_error() -> type[Exception]:
    from pyroute2.netlink.exceptions import NetlinkError

    return NetlinkError  # type: ignore[no-any-return]


def error_code(exc: BaseException) -> Any:
    return getattr(exc, "code", None)


def link_exists(name: str) -> bool:
    """Without netlink: the host's /sys/class/net."""
    return os.path.exists(os.path.join("/sys/class/net", name))
