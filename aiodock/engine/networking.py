"""Container networking with Docker's semantics: the default bridge network, user-defined bridge networks,
per-container network namespaces, veth endpoints, addresses from persisted allocators, and published ports
through the in-process proxy.

An attachment (a container's endpoints) lives as long as the container runs: made at start, undone when the task
is gone. Its record is persisted (<data-root>/network/endpoints/<id>.json) so that a restarted daemon keeps the
attachments of running containers, rebinds their published ports, and removes the rest. User networks are
persisted in <data-root>/network/networks/<id>.json; the networks a container was connected to besides its
primary one in <data-root>/network/connections/<id>.json.

The default bridge and its iptables chains are set up with its first endpoint and kept while the daemon runs
(as docker0 is: a lone `docker run` then pays only for its veth and netns); a daemon that stops with no container
on it removes them, and a daemon that starts removes stale ones. A user network's bridge lives from
`network create` to `network rm`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiodock.engine.events import DockerEvents
from aiodock.engine.filters import labels_match, until_timestamp
from aiodock.engine.state import parse_rfc3339
from aiodock.errors import AiodockError, Conflict, InvalidArgument, NotFound, NotImplementedYet
from aiodock.log import get_logger
from aiodock.network import bridge, dns, files, nat, netns, veth
from aiodock.network.ipam import Pool
from aiodock.proxy.manager import PortMapping, PortProxy, PortRequest
from aiodock.util import atomicfile
from aiodock.util.ids import new_id

log = get_logger("aiodock.engine.networking")

BRIDGE_NETWORK = "bridge"
BUILTIN = ("bridge", "host", "none")
AUTO_POOL = ipaddress.IPv4Network("172.31.0.0/16")  # /24s for user networks created without a subnet


class Forbidden(AiodockError):
    """Docker's errdefs.Forbidden (HTTP 403)."""

    http_status = 403


@dataclass(frozen=True, slots=True)
class Network:
    id: str
    name: str
    driver: str  # bridge, host, null
    bridge: str = ""
    subnet: str = ""
    gateway: str = ""
    created: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    internal: bool = False
    builtin: bool = False
    user_subnet: bool = False  # IPAM.Config gave the subnet (--subnet): only then may endpoints ask for an --ip

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "driver": self.driver, "bridge": self.bridge,
                "subnet": self.subnet, "gateway": self.gateway, "created": self.created, "labels": self.labels,
                "options": self.options, "internal": self.internal, "user_subnet": self.user_subnet}

    @staticmethod
    def from_json(raw: dict[str, Any]) -> Network:
        return Network(id=raw["id"], name=raw["name"], driver=raw["driver"], bridge=raw["bridge"],
                       subnet=raw["subnet"], gateway=raw["gateway"], created=raw.get("created", ""),
                       labels=dict(raw.get("labels") or {}), options=dict(raw.get("options") or {}),
                       internal=bool(raw.get("internal")), user_subnet=bool(raw.get("user_subnet")))


@dataclass(frozen=True, slots=True)
class NetworkAttachment:
    container_id: str
    network_name: str
    network_id: str
    endpoint_id: str
    netns_path: str
    ip: str
    prefix_len: int
    gateway: str
    mac: str
    interface: str = "eth0"
    ports: tuple[PortMapping, ...] = field(default=())

    @property
    def index(self) -> int:
        return int(self.interface[3:])

    def to_json(self) -> dict[str, Any]:
        return {"container_id": self.container_id, "network_name": self.network_name,
                "network_id": self.network_id, "endpoint_id": self.endpoint_id, "netns_path": self.netns_path,
                "ip": self.ip, "prefix_len": self.prefix_len, "gateway": self.gateway, "mac": self.mac,
                "interface": self.interface, "ports": [p.to_json() for p in self.ports]}

    @staticmethod
    def from_json(raw: dict[str, Any]) -> NetworkAttachment:
        return NetworkAttachment(
            container_id=raw["container_id"], network_name=raw["network_name"], network_id=raw["network_id"],
            endpoint_id=raw["endpoint_id"], netns_path=raw["netns_path"], ip=raw["ip"],
            prefix_len=int(raw["prefix_len"]), gateway=raw["gateway"], mac=raw["mac"],
            interface=raw.get("interface", "eth0"),
            ports=tuple(PortMapping.from_json(p) for p in raw.get("ports") or []))


def _port_key(spec: str) -> tuple[int, str]:
    port, _, proto = spec.partition("/")
    try:
        number = int(port)
    except ValueError:
        raise InvalidArgument(f"invalid port specification: \"{spec}\"") from None
    if not 0 < number < 65536:
        raise InvalidArgument(f"invalid port specification: \"{spec}\"")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidArgument(f"invalid proto: {proto}")
    return number, proto


def _host_port_range(raw: str) -> tuple[int, int]:
    raw = (raw or "").strip()
    if not raw:
        return 0, 0
    first, sep, last = raw.partition("-")
    try:
        start = int(first)
        end = int(last) if sep else start
    except ValueError:
        raise InvalidArgument(f"invalid hostPort: {raw}") from None
    if not (0 <= start <= 65535 and 0 <= end <= 65535) or end < start:
        raise InvalidArgument(f"invalid hostPort: {raw}")
    return start, end


def port_requests(port_bindings: dict[str, Any] | None, publish_all: bool,
                  exposed: dict[str, Any] | None) -> list[PortRequest]:
    """Docker's PortBindings (+ ExposedPorts with -P) as proxy requests; sorted for stable results."""
    requests: list[PortRequest] = []
    seen: set[tuple[int, str]] = set()
    for spec, bindings in sorted((port_bindings or {}).items()):
        port, proto = _port_key(spec)
        if proto == "sctp":
            raise InvalidArgument("publishing sctp ports is not supported")
        seen.add((port, proto))
        for b in bindings or [{}]:
            b = b or {}
            start, end = _host_port_range(str(b.get("HostPort") or ""))
            requests.append(PortRequest(proto, port, str(b.get("HostIp") or ""), start, end))
    if publish_all:
        for spec in sorted(exposed or {}):
            port, proto = _port_key(spec)
            if (port, proto) not in seen and proto in ("tcp", "udp"):
                requests.append(PortRequest(proto, port))
    return requests


def _host_addresses() -> str:
    return subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True, check=False).stdout


def _now() -> str:
    from datetime import UTC, datetime
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


ContainerLookup = Callable[[str], Awaitable[dict[str, Any]]]
NameLookup = Callable[[str], tuple[str, str] | None]  # container id -> (name, hostname)

# Docker's (runconfig) errors for endpoint settings
ERR_IP_PREDEFINED = "user specified IP address is supported on user defined networks only"
ERR_IP_NO_SUBNET = "user specified IP address is supported only when connecting to networks with user configured subnets"
ERR_ALIAS_PREDEFINED = "network-scoped alias is supported only for containers in user defined networks"


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """What a container asked of its endpoint on one network: --network-alias and --ip."""

    aliases: tuple[str, ...] = ()
    ipv4: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"aliases": list(self.aliases), "ipv4": self.ipv4}

    @staticmethod
    def from_json(raw: dict[str, Any]) -> EndpointConfig:
        return EndpointConfig(aliases=tuple(str(a) for a in raw.get("aliases") or []), ipv4=str(raw.get("ipv4") or ""))


class NetworkService:
    def __init__(self, *, data_root: Path, exec_root: Path, bridge_name: str, bip: str,
                 proxy: PortProxy | None = None, userland_proxy: bool = True) -> None:
        iface = ipaddress.IPv4Interface(bip)
        if iface.ip in (iface.network.network_address, iface.network.broadcast_address):
            raise InvalidArgument(f"invalid --bip: {bip}")
        self.bridge_name = bridge_name
        self.gateway = str(iface.ip)
        self.subnet = str(iface.network)
        self.prefix_len = iface.network.prefixlen
        self._root = data_root / "network"
        self._endpoints = self._root / "endpoints"
        self._connections_dir = self._root / "connections"
        self._networks_dir = self._root / "networks"
        self._netns_dir = exec_root / "netns"
        self.proxy = proxy or PortProxy(dnat=None if userland_proxy else functools.partial(nat.program_dnat,
                                                                                           bridge_name))
        self._isolation = nat.isolation_chain(bridge_name)  # this daemon's networks cannot reach each other
        self._events: DockerEvents | None = None  # set_docker_events

        def builtin_id(name: str) -> str:
            return hashlib.sha256(f"aiodock-{name}:{bridge_name}:{self.subnet}".encode()).hexdigest()

        self.network_id = builtin_id(BRIDGE_NETWORK)
        self._networks: dict[str, Network] = {
            self.network_id: Network(id=self.network_id, name=BRIDGE_NETWORK, driver="bridge", bridge=bridge_name,
                                     subnet=self.subnet, gateway=self.gateway, builtin=True, created=_now(),
                                     options={"com.docker.network.bridge.default_bridge": "true",
                                              "com.docker.network.bridge.name": bridge_name}),
        }
        for name, driver in (("host", "host"), ("none", "null")):
            nid = builtin_id(name)
            self._networks[nid] = Network(id=nid, name=name, driver=driver, builtin=True, created=_now())
        self._pools: dict[str, Pool] = {self.network_id: Pool(self._root / "ipam" / f"{BRIDGE_NETWORK}.json",
                                                               self.subnet, self.gateway)}
        self._attachments: dict[str, dict[str, NetworkAttachment]] = {}  # container -> network id -> endpoint
        self._connections: dict[str, list[str]] = {}  # container -> extra network ids
        self._lock = asyncio.Lock()
        self._ready: set[str] = set()
        self._restored = False  # until restore() ran, attachments of running containers are not known yet
        self._lookup_container: ContainerLookup | None = None
        self._epconfig: dict[str, dict[str, EndpointConfig]] = {}  # container -> network id -> --alias/--ip
        self._dns: dict[str, dns.DnsServer] = {}  # container -> its embedded DNS server
        self._upstreams: dict[str, list[str]] = {}  # container -> external DNS servers
        self._names: NameLookup | None = None
        self._epconfig_dir = self._root / "endpoint-config"
        self._dns_dir = self._root / "dns"

    def set_docker_events(self, events: DockerEvents) -> None:
        """Where network create/connect/disconnect/destroy events (GET /events, type network) are recorded."""
        self._events = events

    def _event(self, action: str, net: Network, container_id: str = "") -> None:
        if self._events is not None:
            attributes = {"name": net.name, "type": net.driver}
            if container_id:
                attributes["container"] = container_id
            self._events.record("network", action, net.id, attributes)

    def set_container_lookup(self, lookup: ContainerLookup) -> None:
        """How connect/disconnect and network inspect find containers (ContainerService.inspect)."""
        self._lookup_container = lookup

    # ---- networks -----------------------------------------------------------------------------------------------

    def _find(self, ref: str) -> Network:
        if not ref:
            raise NotFound("network  not found")
        by_id = self._networks.get(ref)
        if by_id is not None:
            return by_id
        for net in self._networks.values():
            if net.name == ref:
                return net
        matches = [n for n in self._networks.values() if n.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"network {ref} is ambiguous ({len(matches)} matches found on name)")
        raise NotFound(f"network {ref} not found")

    def exists(self, ref: str) -> bool:
        try:
            self._find(ref)
        except (NotFound, InvalidArgument):
            return False
        return True

    def _bridge_net(self, ref: str) -> Network:
        net = self._find(ref)
        if net.driver != "bridge":
            raise InvalidArgument(f"network {net.name} is not a bridge network")
        return net

    def _setup_blocking(self, net: Network) -> None:
        bridge.ensure(net.bridge, f"{net.gateway}/{ipaddress.IPv4Network(net.subnet).prefixlen}")
        nat.setup(net.bridge, net.subnet, internal=net.internal, isolation=self._isolation)

    def _teardown_blocking(self, net: Network) -> None:
        nat.cleanup_all(net.bridge)
        bridge.delete(net.bridge)

    async def _ensure_ready(self, net: Network) -> None:
        if net.id not in self._ready:
            await asyncio.to_thread(self._setup_blocking, net)
            self._ready.add(net.id)

    def _users(self, network_id: str) -> list[str]:
        return [cid for cid, eps in self._attachments.items() if network_id in eps]

    async def _teardown_default_if_unused(self) -> None:
        if self._restored and not self._users(self.network_id):
            await asyncio.to_thread(self._teardown_blocking, self._networks[self.network_id])
            self._ready.discard(self.network_id)

    async def create_network(self, body: dict[str, Any]) -> dict[str, str]:
        """POST /networks/create (bridge driver only)."""
        name = body.get("Name")
        if not name or not isinstance(name, str):
            raise InvalidArgument("network name is required")  # Docker's CLI catches this first
        driver = body.get("Driver") or "bridge"
        if driver != "bridge":
            raise NotImplementedYet(f"network driver {driver!r} is not supported (bridge only)")
        if body.get("EnableIPv6"):
            raise NotImplementedYet("IPv6 networks are not supported yet")
        async with self._lock:
            if any(n.name == name for n in self._networks.values()):
                raise Conflict(f"network with name {name} already exists")
            configs = [c for c in ((body.get("IPAM") or {}).get("Config") or []) if c]
            if len(configs) > 1:
                raise NotImplementedYet("only one IPv4 subnet per network is supported")
            used = [ipaddress.IPv4Network(n.subnet) for n in self._networks.values() if n.subnet]
            if configs and configs[0].get("Subnet"):
                try:
                    subnet = ipaddress.IPv4Network(configs[0]["Subnet"], strict=False)
                except ValueError:
                    raise InvalidArgument(f"invalid subnet {configs[0]['Subnet']}") from None
                if any(subnet.overlaps(u) for u in used):
                    raise Forbidden("Pool overlaps with other one on this address space")
            else:
                host = await asyncio.to_thread(_host_addresses)
                subnet = next((s for s in AUTO_POOL.subnets(new_prefix=24)
                               if not any(s.overlaps(u) for u in used) and f" {str(s.network_address)[:-1]}" not in host),
                              None)  # type: ignore[assignment]
                if subnet is None:
                    raise Forbidden("could not find an available, non-overlapping IPv4 address pool among the "
                                    "defaults to assign to the network")
            gateway = (configs[0].get("Gateway") if configs else None) or str(next(subnet.hosts()))
            try:
                if ipaddress.IPv4Address(gateway) not in subnet:
                    raise InvalidArgument(f"no matching subnet for gateway {gateway}")
            except ValueError:
                raise InvalidArgument(f"invalid gateway {gateway}") from None
            nid = new_id()
            options = {str(k): str(v) for k, v in (body.get("Options") or {}).items()}
            net = Network(id=nid, name=name, driver="bridge",
                          bridge=options.get("com.docker.network.bridge.name") or f"br-{nid[:12]}",
                          subnet=str(subnet), gateway=gateway, created=_now(),
                          labels={str(k): str(v) for k, v in (body.get("Labels") or {}).items()},
                          options=options, internal=bool(body.get("Internal")),
                          user_subnet=bool(configs and configs[0].get("Subnet")))
            try:
                await asyncio.to_thread(self._setup_blocking, net)
                self._pools[nid] = await asyncio.to_thread(
                    Pool, self._root / "ipam" / f"{nid}.json", net.subnet, net.gateway)
                await asyncio.to_thread(atomicfile.write_json, self._networks_dir / f"{nid}.json", net.to_json())
            except BaseException:
                await asyncio.to_thread(self._teardown_blocking, net)
                self._pools.pop(nid, None)
                raise
            self._networks[nid] = net
            self._ready.add(nid)
        self._event("create", net)
        return {"Id": nid, "Warning": ""}

    async def remove_network(self, ref: str) -> None:
        async with self._lock:
            net = self._find(ref)
            if net.builtin:
                raise Forbidden(f"{net.name} is a pre-defined network and cannot be removed")
            if self._users(net.id):
                raise Forbidden(f"error while removing network: network {net.name} id {net.id} has active endpoints")
            await asyncio.to_thread(self._teardown_blocking, net)
            self._networks.pop(net.id, None)
            self._pools.pop(net.id, None)
            self._ready.discard(net.id)
            for cid, extra in list(self._connections.items()):
                if net.id in extra:
                    await self._save_connections(cid, [n for n in extra if n != net.id])

            def forget() -> None:
                (self._networks_dir / f"{net.id}.json").unlink(missing_ok=True)
                (self._root / "ipam" / f"{net.id}.json").unlink(missing_ok=True)

            await asyncio.to_thread(forget)
        self._event("destroy", net)

    async def prune_networks(self, filters: dict[str, list[str]] | None = None) -> dict[str, Any]:
        """POST /networks/prune: the unused user networks, with Docker's `until` and `label`/`label!` filters."""
        filters = filters or {}
        for key in filters:
            if key not in ("until", "label", "label!"):
                raise InvalidArgument(f"invalid filter '{key}'")
        until = until_timestamp(filters.get("until"))
        deleted = []
        for net in list(self._networks.values()):
            if net.builtin or self._users(net.id) or any(net.id in e for e in self._connections.values()):
                continue
            if not labels_match(net.labels, filters):
                continue
            if until is not None and parse_rfc3339(net.created).timestamp() >= until:
                continue
            try:
                await self.remove_network(net.id)
            except AiodockError:
                continue
            deleted.append(net.name)
        return {"NetworksDeleted": deleted or None}

    async def _save_connections(self, cid: str, extra: list[str]) -> None:
        path = self._connections_dir / f"{cid}.json"
        if extra:
            self._connections[cid] = extra
            await asyncio.to_thread(atomicfile.write_json, path, extra)
        else:
            self._connections.pop(cid, None)
            await asyncio.to_thread(path.unlink, True)

    async def _container(self, ref: str) -> tuple[str, str, bool, str]:
        if self._lookup_container is None:
            raise NotImplementedYet("container look-up is not wired")
        info = await self._lookup_container(ref)
        mode = (info.get("HostConfig") or {}).get("NetworkMode") or "default"
        return (info["Id"], str(info.get("Name", "")).lstrip("/"), bool(info["State"]["Running"]),
                BRIDGE_NETWORK if mode == "default" else mode)

    async def connect(self, network_ref: str, container_ref: str, endpoint_config: dict[str, Any] | None = None,
                      ) -> None:
        net = self._find(network_ref)
        cid, name, running, mode = await self._container(container_ref)
        if net.driver != "bridge" or mode in ("host", "none") or mode.startswith("container:"):
            raise Forbidden("container cannot be disconnected from host network or connected to host network"
                            if "host" in (net.name, mode) else
                            "container sharing network namespace with another container or host cannot be "
                            "connected to any other network")
        async with self._lock:
            primary = self._find(mode).id if self.exists(mode) else ""
            extra = self._connections.get(cid, [])
            if net.id == primary or net.id in extra:
                raise Forbidden(f"endpoint with name {name} already exists in network {net.name}")
            await self._set_config(cid, net, endpoint_config)  # --alias, --ip: checked, the address reserved
            try:
                if running:
                    eps = self._attachments.get(cid, {})
                    first = next(iter(eps.values()), None)
                    if first is None:
                        raise Conflict(f"container {cid} has no network namespace to connect")
                    used = {a.index for a in eps.values()}
                    index = next(i for i in range(1, 64) if i not in used)
                    att = await self._endpoint(cid, net, Path(first.netns_path), index)
                    self._attachments[cid][net.id] = att
                    await self._save_endpoints(cid)
                    await self._start_dns(cid, None)
                    self._event("connect", net, cid)
            except BaseException:
                await self._drop_config(cid, net.id)
                raise
            await self._save_connections(cid, [*extra, net.id])

    async def disconnect(self, network_ref: str, container_ref: str, force: bool = False) -> None:
        net = self._find(network_ref)
        cid, name, running, mode = await self._container(container_ref)
        async with self._lock:
            extra = self._connections.get(cid, [])
            primary = self._find(mode).id if self.exists(mode) else ""
            if net.id == primary:
                raise NotImplementedYet("disconnecting a container from its primary network is not supported yet")
            if net.id not in extra:
                raise Forbidden(f"container {cid} is not connected to network {net.name}")
            att = self._attachments.get(cid, {}).pop(net.id, None)
            if att is not None:
                await self._release_endpoint(att)
                await self._save_endpoints(cid)
                self._event("disconnect", net, cid)
            await self._drop_config(cid, net.id)
            await self._save_connections(cid, [n for n in extra if n != net.id])

    # ---- attach / detach ------------------------------------------------------------------------------------------

    async def _endpoint(self, cid: str, net: Network, path: Path, index: int,
                        requests: list[PortRequest] | None = None, mac: str | None = None) -> NetworkAttachment:
        await self._ensure_ready(net)
        pool = self._pools[net.id]
        ip = await asyncio.to_thread(self._allocate, pool, cid, net.id)
        prefix = ipaddress.IPv4Network(net.subnet).prefixlen
        try:
            await asyncio.to_thread(
                veth.create, container_id=cid, netns_path=path, bridge=net.bridge, ip=ip, prefix_len=prefix,
                gateway=net.gateway if index == 0 and not net.internal else None, index=index, mac=mac)
            if self.proxy.dnat:  # as dockerd without the userland proxy: hairpin NAT to the container's own ports
                await asyncio.to_thread(bridge.set_hairpin, net.bridge, veth.host_name(cid, index))
            # as Docker: no published port on an --internal network
            ports = await self.proxy.publish(cid, ip, requests, bridge=net.bridge) \
                if requests is not None and not net.internal else []
        except BaseException:
            await asyncio.to_thread(veth.delete, cid, index)
            await asyncio.to_thread(pool.release, cid)
            raise
        return NetworkAttachment(
            container_id=cid, network_name=net.name, network_id=net.id,
            endpoint_id=hashlib.sha256(f"{cid}:{net.id}:{ip}".encode()).hexdigest(), netns_path=str(path), ip=ip,
            prefix_len=prefix, gateway=net.gateway, mac=mac or veth.mac_for(ip), interface=f"eth{index}",
            ports=tuple(ports))

    async def _release_endpoint(self, att: NetworkAttachment) -> None:
        def blocking() -> None:
            try:
                veth.delete(att.container_id, att.index)
            except OSError as exc:
                log.warning("deleting veth failed", container=att.container_id, error=str(exc))
            pool = self._pools.get(att.network_id)
            if pool is not None:
                pool.release(att.container_id)

        await asyncio.to_thread(blocking)

    async def _save_endpoints(self, cid: str) -> None:
        eps = self._attachments.get(cid) or {}
        await asyncio.to_thread(atomicfile.write_json, self._endpoints / f"{cid}.json",
                                [a.to_json() for a in eps.values()])

    async def attach(self, container_id: str, mode: str, *, port_bindings: dict[str, Any] | None = None,
                     publish_all: bool = False, exposed_ports: dict[str, Any] | None = None,
                     dns_servers: list[str] | None = None, mac_address: str | None = None,
                     ) -> NetworkAttachment | None:
        """Connect a container about to start; ``None`` for modes that need no endpoint (host, none)."""
        if mode in ("host", "none") or mode.startswith("container:"):
            return None
        primary = self._bridge_net(mode)
        requests = port_requests(port_bindings, publish_all, exposed_ports)
        async with self._lock:
            if container_id in self._attachments or (self._endpoints / f"{container_id}.json").exists():
                await self._detach_locked(container_id)
            path = self._netns_dir / container_id
            nets = [primary] + [self._networks[n] for n in self._connections.get(container_id, [])
                                if n in self._networks and n != primary.id]
            self._attachments[container_id] = {}
            try:
                await asyncio.to_thread(netns.delete, path)
                await asyncio.to_thread(netns.create, path)
                for index, net in enumerate(nets):
                    att = await self._endpoint(container_id, net, path, index, requests if index == 0 else None,
                                               mac_address if index == 0 else None)
                    self._attachments[container_id][net.id] = att
                await self._save_endpoints(container_id)
                await self._start_dns(container_id, dns_servers)
            except BaseException:
                await self._detach_locked(container_id)
                await self._teardown_default_if_unused()
                raise
            for net in nets:
                self._event("connect", net, container_id)
            return self._attachments[container_id][primary.id]

    async def _detach_locked(self, container_id: str) -> None:
        await self._stop_dns(container_id)
        eps = self._attachments.pop(container_id, None)
        if eps is None:
            eps = {a.network_id: a for a in await asyncio.to_thread(self._load_endpoint_file,
                                                                    self._endpoints / f"{container_id}.json")}
        await self.proxy.unpublish(container_id)
        for att in eps.values():
            await self._release_endpoint(att)
            net = self._networks.get(att.network_id)
            if net is not None:
                self._event("disconnect", net, container_id)

        def blocking() -> None:
            try:
                netns.delete(self._netns_dir / container_id)
            except OSError as exc:
                log.warning("deleting netns failed", container=container_id, error=str(exc))
            (self._endpoints / f"{container_id}.json").unlink(missing_ok=True)

        await asyncio.to_thread(blocking)

    async def detach(self, container_id: str, forget: bool = False) -> None:
        """Disconnect a container whose task is gone; ``forget`` (container removed): drop its connections too."""
        async with self._lock:
            if container_id in self._attachments or (self._endpoints / f"{container_id}.json").exists():
                await self._detach_locked(container_id)
            if forget and container_id in self._connections:
                await self._save_connections(container_id, [])
            if forget:
                await self._forget_config(container_id)

    async def restore(self, running_ids: set[str]) -> None:
        """At daemon start: keep (and re-publish the ports of) attachments of running containers, drop the rest,
        and remove the default bridge and its chains when nothing uses them (stale leftovers included)."""
        async with self._lock:
            self._restored = True
            for net in await asyncio.to_thread(self._load_networks):
                self._networks[net.id] = net
                self._pools[net.id] = await asyncio.to_thread(
                    Pool, self._root / "ipam" / f"{net.id}.json", net.subnet, net.gateway)
                await self._ensure_ready(net)
            self._connections = await asyncio.to_thread(self._load_connections)
            for cid in list(self._connections):
                extra = [n for n in self._connections[cid] if n in self._networks]
                if extra != self._connections[cid]:
                    await self._save_connections(cid, extra)
            for path in await asyncio.to_thread(self._endpoint_files):
                loaded = await asyncio.to_thread(self._load_endpoint_file, path)
                cid = path.stem
                alive = cid in running_ids and all(Path(a.netns_path).exists() for a in loaded)
                if alive and loaded and all(a.network_id in self._networks for a in loaded):
                    self._attachments[cid] = {a.network_id: a for a in loaded}
                else:
                    self._attachments.pop(cid, None)
                    await self._detach_locked(cid)
            for net_id, pool in self._pools.items():
                await asyncio.to_thread(pool.retain, set(self._users(net_id)))
            await asyncio.to_thread(self._remove_stray_netns, set(self._attachments))
            await self._restore_dns()
            default = self._networks[self.network_id]
            if not self._users(self.network_id):
                await asyncio.to_thread(self._teardown_blocking, default)
            else:
                await self._ensure_ready(default)
            for cid, eps in list(self._attachments.items()):
                for att in eps.values():
                    if not att.ports:
                        continue
                    requests = [PortRequest(p.proto, p.container_port, "" if p.host_ip == "0.0.0.0" else p.host_ip,
                                            p.host_port, p.host_port) for p in att.ports]
                    bridge_name = self._networks[att.network_id].bridge
                    try:
                        await self.proxy.publish(cid, att.ip, requests, bridge=bridge_name)
                    except (AiodockError, OSError) as exc:
                        log.error("could not rebind published ports", container=cid, error=str(exc))
            if self.proxy.dnat:
                await self.proxy.sync()  # exactly the DNAT rules of the ports just rebound, stale ones gone
            else:  # stale DNAT rules of an earlier --userland-proxy=false run would shadow the proxy
                await asyncio.to_thread(nat.program_dnat, self.bridge_name, [])
            keep = {n.bridge for n in self._networks.values() if n.id in self._ready}
            await asyncio.to_thread(nat.prune_isolation, self._isolation, keep)

    def _endpoint_files(self) -> list[Path]:
        return sorted(self._endpoints.glob("*.json")) if self._endpoints.exists() else []

    @staticmethod
    def _load_endpoint_file(path: Path) -> list[NetworkAttachment]:
        try:
            raw = atomicfile.read_json(path)
            return [NetworkAttachment.from_json(a) for a in (raw if isinstance(raw, list) else [raw])]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError) as exc:
            log.warning("dropping unreadable endpoint record", path=str(path), error=str(exc))
            return []

    def _load_networks(self) -> list[Network]:
        found = []
        for path in sorted(self._networks_dir.glob("*.json")) if self._networks_dir.exists() else []:
            try:
                found.append(Network.from_json(atomicfile.read_json(path)))
            except (OSError, ValueError, KeyError) as exc:
                log.warning("unreadable network record", path=str(path), error=str(exc))
        return found

    def _load_connections(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for path in sorted(self._connections_dir.glob("*.json")) if self._connections_dir.exists() else []:
            try:
                found[path.stem] = [str(n) for n in atomicfile.read_json(path)]
            except (OSError, ValueError, TypeError) as exc:
                log.warning("unreadable connections record", path=str(path), error=str(exc))
        return found

    def _remove_stray_netns(self, keep: set[str]) -> None:
        if not self._netns_dir.exists():
            return
        for path in self._netns_dir.iterdir():
            if path.name not in keep:
                netns.delete(path)
                veth.delete(path.name)

    async def close(self) -> None:
        """Daemon stop: stop forwarding; endpoints, bridges and rules stay for the running containers, and the
        default bridge goes when no container uses it."""
        await self.proxy.close()
        async with self._lock:
            for cid in list(self._dns):
                await self._stop_dns(cid, keep_record=True)
            await self._teardown_default_if_unused()

    # ---- endpoint settings (--network-alias, --ip) and the embedded DNS server ---------------------------------

    def set_name_lookup(self, lookup: NameLookup) -> None:
        """How the embedded DNS server learns a container's name and hostname (None: no such container)."""
        self._names = lookup

    @staticmethod
    def _parse_config(net: Network, raw: Any) -> EndpointConfig:
        """Docker's EndpointSettings (Aliases, IPAMConfig.IPv4Address), checked as Docker checks them."""
        if raw is None:
            return EndpointConfig()
        if not isinstance(raw, dict):
            raise InvalidArgument(f"no EndpointSettings for {net.name}")
        aliases = raw.get("Aliases") or []
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise InvalidArgument("json: cannot unmarshal Aliases into Go struct field EndpointSettings.Aliases "
                                  "of type []string")
        ipam = raw.get("IPAMConfig") or {}
        if not isinstance(ipam, dict):
            raise InvalidArgument("json: cannot unmarshal IPAMConfig into Go struct field "
                                  "EndpointSettings.IPAMConfig of type network.EndpointIPAMConfig")
        ipv4 = ipam.get("IPv4Address") or ""
        ipv6 = ipam.get("IPv6Address") or ""
        if not isinstance(ipv4, str) or not isinstance(ipv6, str):
            raise InvalidArgument("json: cannot unmarshal IPAMConfig into Go struct field "
                                  "EndpointSettings.IPAMConfig of type network.EndpointIPAMConfig")
        if ipv4:
            try:
                ipv4 = str(ipaddress.IPv4Address(ipv4))
            except ValueError:
                raise InvalidArgument(f"invalid IPv4 address: {ipv4}") from None
        if ipv6:
            try:
                ipaddress.IPv6Address(ipv6)
            except ValueError:
                raise InvalidArgument(f"invalid IPv6 address: {ipv6}") from None
        if net.builtin:
            if ipv4 or ipv6:
                raise InvalidArgument(ERR_IP_PREDEFINED)
            if aliases:
                raise InvalidArgument(ERR_ALIAS_PREDEFINED)
        if ipv6 or (ipv4 and not net.user_subnet):
            raise InvalidArgument(ERR_IP_NO_SUBNET)
        return EndpointConfig(aliases=tuple(dict.fromkeys(a for a in aliases if a)), ipv4=ipv4)

    async def _set_config(self, cid: str, net: Network, raw: Any) -> EndpointConfig:
        """Check and keep a container's settings for ``net`` (a fixed address is reserved now). Under the lock."""
        cfg = self._parse_config(net, raw)
        old = self._epconfig.get(cid, {}).get(net.id)
        pool = self._pools.get(net.id)
        if pool is not None:
            try:
                if cfg.ipv4:
                    await asyncio.to_thread(pool.reserve, cid, cfg.ipv4)
                elif old is not None and old.ipv4:
                    await asyncio.to_thread(pool.unreserve, cid)
            except Conflict as exc:
                raise Forbidden(exc.message) from None
        if cfg == EndpointConfig():
            self._epconfig.get(cid, {}).pop(net.id, None)
        else:
            self._epconfig.setdefault(cid, {})[net.id] = cfg
        await self._save_config(cid)
        return cfg

    async def _drop_config(self, cid: str, net_id: str) -> None:
        cfg = self._epconfig.get(cid, {}).pop(net_id, None)
        pool = self._pools.get(net_id)
        if cfg is not None and cfg.ipv4 and pool is not None:
            await asyncio.to_thread(pool.unreserve, cid)
        if cfg is not None:
            await self._save_config(cid)

    async def _forget_config(self, cid: str) -> None:
        for net_id in list(self._epconfig.get(cid, {})):
            await self._drop_config(cid, net_id)
        self._epconfig.pop(cid, None)
        await asyncio.to_thread((self._epconfig_dir / f"{cid}.json").unlink, True)

    async def _save_config(self, cid: str) -> None:
        configs = self._epconfig.get(cid) or {}
        path = self._epconfig_dir / f"{cid}.json"
        if configs:
            await asyncio.to_thread(atomicfile.write_json, path, {n: c.to_json() for n, c in configs.items()})
        else:
            self._epconfig.pop(cid, None)
            await asyncio.to_thread(path.unlink, True)

    def _load_configs(self) -> dict[str, dict[str, EndpointConfig]]:
        found: dict[str, dict[str, EndpointConfig]] = {}
        for path in sorted(self._epconfig_dir.glob("*.json")) if self._epconfig_dir.exists() else []:
            try:
                raw = atomicfile.read_json(path)
                found[path.stem] = {str(n): EndpointConfig.from_json(c) for n, c in raw.items()}
            except (OSError, ValueError, TypeError, AttributeError) as exc:
                log.warning("unreadable endpoint settings", path=str(path), error=str(exc))
        return found

    def _allocate(self, pool: Pool, cid: str, net_id: str) -> str:
        """The container's address on a network: its --ip, or the next free one. Blocking."""
        cfg = self._epconfig.get(cid, {}).get(net_id)
        try:
            return pool.allocate(cid, cfg.ipv4 if cfg else None)
        except Conflict as exc:
            raise Forbidden(exc.message) from None

    async def configure(self, container_id: str, mode: str, networking_config: Any) -> None:
        """Container create: Docker's NetworkingConfig.EndpointsConfig (one network at API 1.41)."""
        if networking_config is None:
            return
        if not isinstance(networking_config, dict):
            raise InvalidArgument("NetworkingConfig must be a JSON object")
        endpoints = networking_config.get("EndpointsConfig") or {}
        if not isinstance(endpoints, dict):
            raise InvalidArgument("NetworkingConfig.EndpointsConfig must be a JSON object")
        if len(endpoints) > 1:
            raise InvalidArgument(f"Container cannot be connected to network endpoints: {', '.join(endpoints)}")
        primary_ref = BRIDGE_NETWORK if mode == "default" else mode
        for key, raw in endpoints.items():
            if raw is None:
                raise InvalidArgument(f"no EndpointSettings for {key}")
            net = self._find(BRIDGE_NETWORK if key == "default" else key)
            async with self._lock:
                await self._set_config(container_id, net, raw)
                primary = self._find(primary_ref) if self.exists(primary_ref) else None
                if (primary is not None and primary.driver == "bridge" and net.id != primary.id
                        and net.driver == "bridge"):  # as Docker: the endpoint's network is joined at start too
                    extra = self._connections.get(container_id, [])
                    if net.id not in extra:
                        await self._save_connections(container_id, [*extra, net.id])

    def _endpoint_extras(self, cid: str, net: Network) -> tuple[list[str] | None, dict[str, str] | None]:
        """Inspect's Aliases (the asked ones, then the short id and the hostname, as Docker adds them on user
        networks) and IPAMConfig of a container's endpoint."""
        if net.builtin:
            return None, None
        cfg = self._epconfig.get(cid, {}).get(net.id) or EndpointConfig()
        aliases = list(cfg.aliases)
        extra = [cid[:12]]
        found = self._names(cid) if self._names is not None else None
        if found is not None and found[1]:
            extra.append(found[1])
        aliases += [a for a in extra if a not in aliases]
        return list(dict.fromkeys(aliases)), ({"IPv4Address": cfg.ipv4} if cfg.ipv4 else None)

    def embedded_dns(self, container_id: str) -> bool:
        """Whether the container asks 127.0.0.11 (it has an endpoint on a user-defined network)."""
        return container_id in self._dns

    def _user_networks(self, cid: str) -> list[Network]:
        nets = [self._networks.get(n) for n in self._attachments.get(cid, {})]
        return [n for n in nets if n is not None and not n.builtin]

    def _dns_names(self, cid: str, net_id: str) -> set[str]:
        names = {cid[:12]}
        found = self._names(cid) if self._names is not None else None
        if found is not None:
            names.update(found)
        cfg = self._epconfig.get(cid, {}).get(net_id)
        if cfg is not None:
            names.update(cfg.aliases)
        return {n.lower() for n in names if n}

    def _dns_lookup(self, cid: str, name: str) -> list[str] | None:
        """A name (container name, alias, short id; also <name>.<network>) on the asker's user networks."""
        found: list[str] = []
        for net in self._user_networks(cid):
            wanted = {name}
            suffix = "." + net.name.lower()
            if name.endswith(suffix):
                wanted.add(name[: -len(suffix)])
            for other, eps in list(self._attachments.items()):
                att = eps.get(net.id)
                if att is not None and att.ip not in found and wanted & self._dns_names(other, net.id):
                    found.append(att.ip)
        return found or None

    def _dns_reverse(self, cid: str, address: str) -> str | None:
        for net in self._user_networks(cid):
            for other, eps in list(self._attachments.items()):
                att = eps.get(net.id)
                if att is not None and att.ip == address:
                    found = self._names(other) if self._names is not None else None
                    return f"{found[0] if found else other[:12]}.{net.name}"
        return None

    async def _start_dns(self, cid: str, dns_servers: list[str] | None, upstreams: list[str] | None = None,
                         serving: bool = False) -> None:
        """Serve 127.0.0.11 in the container's namespace once it is on a user network (idempotent; as Docker's
        sandbox resolver, it then serves until the container stops); remember where other questions go (its
        --dns, else the host's servers). The record (<data-root>/network/dns/<id>.json) is for restore."""
        if upstreams is None and (dns_servers is not None or cid not in self._upstreams):
            upstreams = await asyncio.to_thread(files.external_nameservers, dns_servers)
        if upstreams is not None:
            self._upstreams[cid] = upstreams
        att = next(iter(self._attachments.get(cid, {}).values()), None)
        start = cid not in self._dns and att is not None and (serving or bool(self._user_networks(cid)))
        if start and att is not None:
            zone = dns.Zone(lookup=functools.partial(self._dns_lookup, cid),
                            reverse=functools.partial(self._dns_reverse, cid),
                            upstreams=lambda: self._upstreams.get(cid) or [])
            server = dns.DnsServer(zone)
            try:
                await server.start(att.netns_path)
            except OSError as exc:  # as Docker: the container runs on, without its resolver
                log.error("could not start the embedded DNS server", container=cid, error=str(exc))
            else:
                self._dns[cid] = server
        if upstreams is not None or start:
            await asyncio.to_thread(atomicfile.write_json, self._dns_dir / f"{cid}.json",
                                    {"upstreams": self._upstreams.get(cid) or [], "serving": cid in self._dns})

    async def _stop_dns(self, cid: str, keep_record: bool = False) -> None:
        server = self._dns.pop(cid, None)
        if server is not None:
            await server.close()
        if not keep_record:
            self._upstreams.pop(cid, None)
            await asyncio.to_thread((self._dns_dir / f"{cid}.json").unlink, True)

    async def _restore_dns(self) -> None:
        """Daemon start: settings back in memory; DNS servers back for running containers on user networks."""
        self._epconfig = await asyncio.to_thread(self._load_configs)
        for cid in list(self._attachments):
            try:
                raw = await asyncio.to_thread(atomicfile.read_json, self._dns_dir / f"{cid}.json")
                upstreams = [str(s) for s in raw.get("upstreams") or []]
                serving = bool(raw.get("serving"))
            except (OSError, ValueError, AttributeError):
                upstreams, serving = None, False
            await self._start_dns(cid, None, upstreams, serving)

    # ---- views --------------------------------------------------------------------------------------------------

    def attachment(self, container_id: str) -> NetworkAttachment | None:
        eps = self._attachments.get(container_id) or {}
        return next((a for a in eps.values() if a.index == 0), None)

    def ports(self, container_id: str) -> dict[str, list[dict[str, str]] | None]:
        """NetworkSettings.Ports: every published port, with its host bindings."""
        att = self.attachment(container_id)
        result: dict[str, list[dict[str, str]] | None] = {}
        for p in att.ports if att else ():
            result.setdefault(f"{p.container_port}/{p.proto}", []).append(  # type: ignore[union-attr]
                {"HostIp": p.host_ip, "HostPort": str(p.host_port)})
        return result

    def port_list(self, container_id: str) -> list[dict[str, Any]]:
        """/containers/json "Ports"."""
        att = self.attachment(container_id)
        return [{"IP": p.host_ip, "PrivatePort": p.container_port, "PublicPort": p.host_port, "Type": p.proto}
                for p in (att.ports if att else ())]

    @staticmethod
    def _endpoint_json(att: NetworkAttachment | None, network_id: str, aliases: list[str] | None = None,
                       ipam: dict[str, str] | None = None) -> dict[str, Any]:
        return {
            "IPAMConfig": ipam, "Links": None, "Aliases": aliases, "MacAddress": att.mac if att else "",
            "NetworkID": network_id, "EndpointID": att.endpoint_id if att else "",
            "Gateway": att.gateway if att else "", "IPAddress": att.ip if att else "",
            "IPPrefixLen": att.prefix_len if att else 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "DriverOpts": None, "DNSNames": None,
        }

    def endpoints(self, container_id: str, mode: str) -> dict[str, Any]:
        """NetworkSettings.Networks: the primary network and every connected one (blank while not running)."""
        eps = self._attachments.get(container_id) or {}
        nets = ([self._find(mode)] if self.exists(mode) else []) + [
            self._networks[n] for n in self._connections.get(container_id, []) if n in self._networks]
        return {net.name: self._endpoint_json(eps.get(net.id), net.id, *self._endpoint_extras(container_id, net))
                for net in nets}

    def endpoint_settings(self, container_id: str) -> dict[str, Any] | None:
        att = self.attachment(container_id)
        if att is None:
            return None
        net = self._networks.get(att.network_id)
        return self._endpoint_json(att, att.network_id,
                                   *(self._endpoint_extras(container_id, net) if net else (None, None)))

    def settings(self, container_id: str) -> dict[str, Any]:
        """Docker's top-level NetworkSettings fields (empty strings when not attached)."""
        att = self.attachment(container_id)
        return {
            "Bridge": "", "SandboxID": hashlib.sha256(att.netns_path.encode()).hexdigest() if att else "",
            "SandboxKey": att.netns_path if att else "", "Ports": self.ports(container_id), "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None, "EndpointID": att.endpoint_id if att else "",
            "Gateway": att.gateway if att else "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "IPAddress": att.ip if att else "", "IPPrefixLen": att.prefix_len if att else 0, "IPv6Gateway": "",
            "MacAddress": att.mac if att else "",
        }

    async def inspect_network(self, ref: str, with_containers: bool = True) -> dict[str, Any]:
        net = self._find(ref)
        containers: dict[str, Any] = {}
        if with_containers:
            for cid in self._users(net.id):
                att = self._attachments[cid][net.id]
                name = ""
                if self._lookup_container is not None:
                    try:
                        name = str((await self._lookup_container(cid)).get("Name", "")).lstrip("/")
                    except NotFound:
                        continue
                containers[cid] = {"Name": name, "EndpointID": att.endpoint_id, "MacAddress": att.mac,
                                   "IPv4Address": f"{att.ip}/{att.prefix_len}", "IPv6Address": ""}
        options = dict(net.options)
        if net.driver == "bridge" and net.builtin:
            options.update({"com.docker.network.bridge.enable_icc": "true",
                            "com.docker.network.bridge.enable_ip_masquerade": "true",
                            "com.docker.network.driver.mtu": "1500"})
        return {
            "Name": net.name, "Id": net.id, "Created": net.created, "Scope": "local", "Driver": net.driver,
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": None,
                     "Config": [{"Subnet": net.subnet, "Gateway": net.gateway}] if net.subnet else []},
            "Internal": net.internal, "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False, "Containers": containers, "Options": options, "Labels": dict(net.labels),
        }

    async def list_networks(self, filters: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
        filters = filters or {}
        unknown = set(filters) - {"name", "id", "driver", "type", "label", "scope", "dangling"}
        if unknown:
            raise InvalidArgument(f"invalid filter '{min(unknown)}'")
        result = []
        for net in sorted(self._networks.values(), key=lambda n: (not n.builtin, n.name)):
            if filters.get("name") and not any(v in net.name for v in filters["name"]):
                continue
            if filters.get("id") and not any(net.id.startswith(v) for v in filters["id"]):
                continue
            if filters.get("driver") and net.driver not in filters["driver"]:
                continue
            if filters.get("type") and ("builtin" if net.builtin else "custom") not in filters["type"]:
                continue
            if filters.get("scope") and "local" not in filters["scope"]:
                continue
            ok = True
            for want in filters.get("label", []):
                key, sep, value = want.partition("=")
                if key not in net.labels or (sep and net.labels[key] != value):
                    ok = False
            if ok:
                result.append(await self.inspect_network(net.id))
        return result
