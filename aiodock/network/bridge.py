"""The Linux bridge of a network: created with its gateway address and brought up; deleted. Blocking."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING

from aiodock.network.netlink import error_code, iproute, link_exists, netlink_error

if TYPE_CHECKING:
    from pyroute2 import IPRoute


def link_index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def exists(name: str) -> bool:
    return link_exists(name)


def ensure(name: str, gateway_cidr: str) -> None:
    """Create bridge ``name`` (if missing), give it ``gateway_cidr`` (e.g. 172.30.0.1/16) and bring it up."""
    iface = ipaddress.ip_interface(gateway_cidr)
    with iproute() as ipr:
        index = link_index(ipr, name)
        if index is None:
            try:
                ipr.link("add", ifname=name, kind="bridge")
            except netlink_error() as exc:
                if error_code(exc) != 17:  # EEXIST: another caller won the race
                    raise
            index = link_index(ipr, name)
            assert index is not None
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=index, family=2)}
        if (str(iface.ip), iface.network.prefixlen) not in have:
            ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen,
                     broadcast=str(iface.network.broadcast_address))
        ipr.link("set", index=index, state="up")


def delete(name: str) -> None:
    if not link_exists(name):
        return
    with iproute() as ipr:
        index = link_index(ipr, name)
        if index is not None:
            try:
                ipr.link("del", index=index)
            except netlink_error() as exc:
                if error_code(exc) != 19:  # ENODEV
                    raise


def set_hairpin(name: str, port: str) -> None:
    """Hairpin mode on a bridge port (a container's host-side veth), as dockerd sets it with
    --userland-proxy=false: a container reaches its own published ports through the DNAT rules."""
    path = Path(f"/sys/class/net/{name}/brif/{port}/hairpin_mode")
    if path.exists():
        path.write_text("1\n")
