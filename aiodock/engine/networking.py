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
import hashlib
import ipaddress
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiodock.errors import AiodockError, Conflict, InvalidArgument, NotFound, NotImplementedYet
from aiodock.log import get_logger
from aiodock.network import bridge, nat, netns, veth
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

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "driver": self.driver, "bridge": self.bridge,
                "subnet": self.subnet, "gateway": self.gateway, "created": self.created, "labels": self.labels,
                "options": self.options, "internal": self.internal}

    @staticmethod
    def from_json(raw: dict[str, Any]) -> Network:
        return Network(id=raw["id"], name=raw["name"], driver=raw["driver"], bridge=raw["bridge"],
                       subnet=raw["subnet"], gateway=raw["gateway"], created=raw.get("created", ""),
                       labels=dict(raw.get("labels") or {}), options=dict(raw.get("options") or {}),
                       internal=bool(raw.get("internal")))


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


class NetworkService:
    def __init__(self, *, data_root: Path, exec_root: Path, bridge_name: str, bip: str,
                 proxy: PortProxy | None = None) -> None:
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
        self.proxy = proxy or PortProxy()

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
        nat.setup(net.bridge, net.subnet)

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
                          options=options, internal=bool(body.get("Internal")))
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

    async def prune_networks(self) -> dict[str, Any]:
        deleted = []
        for net in list(self._networks.values()):
            if net.builtin or self._users(net.id) or any(net.id in e for e in self._connections.values()):
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
            await self._save_connections(cid, [n for n in extra if n != net.id])

    # ---- attach / detach ------------------------------------------------------------------------------------------

    async def _endpoint(self, cid: str, net: Network, path: Path, index: int,
                        requests: list[PortRequest] | None = None) -> NetworkAttachment:
        await self._ensure_ready(net)
        pool = self._pools[net.id]
        ip = await asyncio.to_thread(pool.allocate, cid)
        prefix = ipaddress.IPv4Network(net.subnet).prefixlen
        try:
            await asyncio.to_thread(
                veth.create, container_id=cid, netns_path=path, bridge=net.bridge, ip=ip, prefix_len=prefix,
                gateway=net.gateway if index == 0 else None, index=index)
            ports = await self.proxy.publish(cid, ip, requests) if requests is not None else []
        except BaseException:
            await asyncio.to_thread(veth.delete, cid, index)
            await asyncio.to_thread(pool.release, cid)
            raise
        return NetworkAttachment(
            container_id=cid, network_name=net.name, network_id=net.id,
            endpoint_id=hashlib.sha256(f"{cid}:{net.id}:{ip}".encode()).hexdigest(), netns_path=str(path), ip=ip,
            prefix_len=prefix, gateway=net.gateway, mac=veth.mac_for(ip), interface=f"eth{index}",
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
                    att = await self._endpoint(container_id, net, path, index, requests if index == 0 else None)
                    self._attachments[container_id][net.id] = att
                await self._save_endpoints(container_id)
            except BaseException:
                await self._detach_locked(container_id)
                await self._teardown_default_if_unused()
                raise
            return self._attachments[container_id][primary.id]

    async def _detach_locked(self, container_id: str) -> None:
        eps = self._attachments.pop(container_id, None)
        if eps is None:
            eps = {a.network_id: a for a in await asyncio.to_thread(self._load_endpoint_file,
                                                                    self._endpoints / f"{container_id}.json")}
        await self.proxy.unpublish(container_id)
        for att in eps.values():
            await self._release_endpoint(att)

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
                    try:
                        await self.proxy.publish(cid, att.ip, requests)
                    except AiodockError as exc:
                        log.error("could not rebind published ports", container=cid, error=str(exc))

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
            await self._teardown_default_if_unused()

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
    def _endpoint_json(att: NetworkAttachment | None, network_id: str) -> dict[str, Any]:
        return {
            "IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": att.mac if att else "",
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
        return {net.name: self._endpoint_json(eps.get(net.id), net.id) for net in nets}

    def endpoint_settings(self, container_id: str) -> dict[str, Any] | None:
        att = self.attachment(container_id)
        return self._endpoint_json(att, att.network_id) if att else None

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
