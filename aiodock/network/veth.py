"""A container's veth pair: the host end on the bridge, the other end moved into the container's network
namespace as eth0, addressed, up, with a default route via the gateway; the namespace's lo comes up too.

Blocking: call from a thread.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING

from aiodock.network.netlink import error_code, iproute, link_exists, netlink_error

if TYPE_CHECKING:
    pass

from aiodock.network import netns
from aiodock.network.bridge import link_index


def mac_for(ip: str) -> str:
    """Docker's MAC: 02:42 followed by the four bytes of the IPv4 address."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


def host_name(container_id: str, index: int = 0) -> str:
    """The host end: veth + 7 chars of the container id (+ x<n> for the container's eth<n>, n > 0)."""
    return "veth" + container_id[:7] + (f"x{index}" if index else "")


def create(*, container_id: str, netns_path: Path, bridge: str, ip: str, prefix_len: int, gateway: str | None,
           mtu: int = 1500, index: int = 0, mac: str | None = None) -> str:
    """Create the pair and configure both ends (the container end is eth<index>); returns the host end's name.
    ``gateway`` None: no default route (a second network of a container). ``mac``: the container end's address
    (--mac-address), else Docker's from the IP."""
    host = host_name(container_id, index)
    peer = f"vp{container_id[:9]}x{index}"
    mac = mac or mac_for(ip)
    with iproute() as ipr:
        old = link_index(ipr, host)
        if old is not None:  # a leftover of an earlier, interrupted attach
            ipr.link("del", index=old)
        bridge_index = link_index(ipr, bridge)
        if bridge_index is None:
            raise OSError(f"bridge {bridge} does not exist")
        ipr.link("add", ifname=host, kind="veth", peer={"ifname": peer})
        try:
            host_index = link_index(ipr, host)
            peer_index = link_index(ipr, peer)
            assert host_index is not None and peer_index is not None
            ipr.link("set", index=host_index, master=bridge_index, mtu=mtu)
            ipr.link("set", index=host_index, state="up")
            fd = open(netns_path, "rb")  # noqa: SIM115 - closed right below
            try:
                ipr.link("set", index=peer_index, net_ns_fd=fd.fileno())
            finally:
                fd.close()
        except BaseException:
            delete(container_id, index)
            raise
    with netns.entered(netns_path), iproute() as nsr:
        lo = link_index(nsr, "lo")
        if lo is not None:
            nsr.link("set", index=lo, state="up")
        link = link_index(nsr, peer)
        assert link is not None
        nsr.link("set", index=link, ifname=f"eth{index}", address=mac, mtu=mtu)
        nsr.addr("add", index=link, address=ip, prefixlen=prefix_len,
                 broadcast=str(ipaddress.ip_interface(f"{ip}/{prefix_len}").network.broadcast_address))
        nsr.link("set", index=link, state="up")
        if gateway:
            nsr.route("add", dst="0.0.0.0/0", gateway=gateway, oif=link)
    return host


def delete(container_id: str, index: int = 0) -> None:
    """Delete the host end (the kernel deletes its peer); a missing pair is fine."""
    if not link_exists(host_name(container_id, index)):
        return
    with iproute() as ipr:
        link = link_index(ipr, host_name(container_id, index))
        if link is not None:
            try:
                ipr.link("del", index=link)
            except netlink_error() as exc:
                if error_code(exc) != 19:
                    raise


def exists(container_id: str, index: int = 0) -> bool:
    with iproute() as ipr:
        return link_index(ipr, host_name(container_id, index)) is not None
