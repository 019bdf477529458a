"""Issue #5 part B: isolation between networks, --internal networks, `--network container:<id>`, and published
ports through iptables DNAT (--userland-proxy=false).

Real bridges, veths, network namespaces and iptables; traffic only over loopback, the daemon's own bridges and the
containers' namespaces. Every test checks iptables-save before and after: no ADK rule of ours is left.
"""

from __future__ import annotations

import http.server
import ipaddress
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import Daemon, quote_filters
from tests.integration import test_network
from tests.integration.test_network import (
    assert_no_endpoints,
    force_clean,
    free_port,
    http_get,
    inspect,
    iptables_save,
    links,
    ours,
    run_web,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

net = test_network.net  # the same module-scoped fixture: user networks removed, no rule of ours left after


def bridge_of(daemon: Daemon, ref: str) -> str:
    info = json.loads(daemon.docker("network", "inspect", ref, check=True).stdout)[0]
    return str(info["Options"].get("com.docker.network.bridge.name") or f"br-{info['Id'][:12]}")


def subnet_for(daemon: Daemon, second: int) -> str:
    return f"10.{second}.{int(daemon.bip.split('.')[2])}.0/24"


# busybox wget's -T crashes in this busybox; `timeout` must not run as the container's PID 1 (which ignores the
# signal), so every use is followed by another shell command.
WGET = "timeout 5 wget -q -O-"


def reach(daemon: Daemon, network: str, ip: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """From a new container on ``network``: ping ``ip`` and fetch its httpd's /hostname."""
    return daemon.docker("run", "--rm", "--network", network, *extra, "busybox", "sh", "-c",
                         f"ping -c1 -W2 {ip} >/dev/null && echo pinged; {WGET} http://{ip}/hostname; exit $?")


def wait_http(daemon: Daemon, cid: str) -> None:
    """Until the container's httpd answers from inside (no race with the first request of a test)."""
    daemon.docker("exec", cid, "sh", "-c", "for i in $(seq 50); do wget -q -O- http://127.0.0.1/hostname && "
                  "exit 0; sleep 0.1; done; exit 1", check=True)


def test_networks_are_isolated_from_each_other(net: Daemon) -> None:
    before = iptables_save()
    nets = ["adk-iso-a", "adk-iso-b"]
    bridges: list[str] = []
    try:
        for i, name in enumerate(nets):
            net.docker("network", "create", "--subnet", subnet_for(net, 221 + i), name, check=True)
            bridges.append(bridge_of(net, name))
        a = run_web(net, "--network", "adk-iso-a", "--name", "adk-iso-web-a")
        d = run_web(net, "--name", "adk-iso-web-default")
        wait_http(net, a)
        wait_http(net, d)
        a_ip = inspect(net, a)["NetworkSettings"]["Networks"]["adk-iso-a"]["IPAddress"]
        d_ip = inspect(net, d)["NetworkSettings"]["IPAddress"]
        same = reach(net, "adk-iso-a", a_ip)
        assert same.returncode == 0 and "pinged" in same.stdout and a[:12] in same.stdout, same.stderr
        for network, ip in (("adk-iso-b", a_ip), ("bridge", a_ip), ("adk-iso-a", d_ip), ("adk-iso-b", d_ip)):
            other = reach(net, network, ip)
            assert other.returncode != 0 and "pinged" not in other.stdout, (network, ip, other.stdout)
        # one container on both networks reaches both
        both = net.docker("run", "-d", "--network", "adk-iso-b", "--name", "adk-iso-both", "busybox", "sleep", "300",
                          check=True).stdout.strip()
        net.docker("network", "connect", "adk-iso-a", both, check=True)
        net.docker("network", "connect", "bridge", both, check=True)
        out = net.docker("exec", both, "sh", "-c", f"{WGET} http://{a_ip}/hostname; echo; "
                         f"{WGET} http://{d_ip}/hostname; exit $?")
        assert out.returncode == 0 and a[:12] in out.stdout and d[:12] in out.stdout, out.stderr
        rules = iptables_save()
        iso = f"ADK-ISO-{net.bridge_name}"
        for br in [*bridges, net.bridge_name]:
            assert f"-A {iso} -o {br} -j DROP" in rules
            assert f"-A ADK-FWD-{br} -i {br} ! -o {br} -j {iso}" in rules
        net.docker("rm", "-f", a, d, both, check=True)
        for name in nets:
            net.docker("network", "rm", name, check=True)
        after = iptables_save()
        assert not [ln for ln in after.splitlines() if any(b in ln for b in bridges)]
        assert set(ours(net, after, bridges)) <= set(before.splitlines()) | set(ours(net, rules, []))
    finally:
        net.docker("rm", "-f", "adk-iso-web-a", "adk-iso-web-default", "adk-iso-both")
        for name in nets:
            net.docker("network", "rm", name)
        force_clean(net, bridges)


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello-from-host\n")

    def log_message(self, *args: object) -> None:
        pass


def test_internal_network(net: Daemon) -> None:
    before = iptables_save()
    subnet = subnet_for(net, 223)
    nid = net.docker("network", "create", "--internal", "--subnet", subnet, "adk-internal", check=True).stdout.strip()
    brname = f"br-{nid[:12]}"
    server: http.server.HTTPServer | None = None
    try:
        info = json.loads(net.docker("network", "inspect", "adk-internal", check=True).stdout)[0]
        assert info["Internal"] is True
        assert json.loads(net.docker("network", "inspect", "bridge", check=True).stdout)[0]["Internal"] is False
        # a TCP server on the host side, on the default bridge's gateway address (so only containers reach it)
        keep = net.docker("run", "-d", "busybox", "sleep", "300", check=True).stdout.strip()  # keeps the bridge up
        gateway = net.bip.split("/")[0]
        server = http.server.HTTPServer((gateway, 0), _Hello)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://{gateway}:{server.server_address[1]}/"
        normal = net.docker("run", "--rm", "busybox", "sh", "-c", f"{WGET} {url}; exit $?")
        assert normal.returncode == 0 and "hello-from-host" in normal.stdout, normal.stderr
        port = free_port()
        web = run_web(net, "--network", "adk-internal", "--name", "adk-int-web", "-p", f"127.0.0.1:{port}:80")
        wait_http(net, web)
        web_ip = inspect(net, web)["NetworkSettings"]["Networks"]["adk-internal"]["IPAddress"]
        assert ipaddress.ip_address(web_ip) in ipaddress.ip_network(subnet)
        peer = reach(net, "adk-internal", web_ip)
        assert peer.returncode == 0 and "pinged" in peer.stdout and web[:12] in peer.stdout, peer.stderr
        out = net.docker("run", "--rm", "--network", "adk-internal", "busybox", "sh", "-c",
                         f"ip route; {WGET} {url} && echo reached; exit 1")
        assert "default" not in out.stdout and "reached" not in out.stdout and out.returncode != 0, out.stdout
        # as Docker: the ports of a container only on an internal network are not published (only exposed)
        assert inspect(net, web)["NetworkSettings"]["Ports"] == {"80/tcp": None}
        with pytest.raises(OSError):
            http_get(f"http://127.0.0.1:{port}/hostname", timeout=1)
        rules = iptables_save()
        assert f"-A ADK-FWD-{brname} ! -d {subnet} -i {brname} -j DROP" in rules
        assert f"-A ADK-FWD-{brname} ! -s {subnet} -o {brname} -j DROP" in rules
        assert not [ln for ln in rules.splitlines() if "MASQUERADE" in ln and subnet in ln]
        net.docker("rm", "-f", web, keep, check=True)
        net.docker("network", "rm", "adk-internal", check=True)
        after = iptables_save()
        assert brname not in after
        assert set(ours(net, after, [])) <= set(before.splitlines()) | set(ours(net, rules, []))
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        net.docker("rm", "-f", "adk-int-web")
        net.docker("network", "rm", "adk-internal")
        force_clean(net, [brname])


def test_container_network_mode(net: Daemon) -> None:
    web = run_web(net, "--name", "adk-cm-web")
    joined = ""
    try:
        wait_http(net, web)
        info = inspect(net, web)
        ip = info["NetworkSettings"]["IPAddress"]
        out = net.docker("run", "--rm", "--network", "container:adk-cm-web", "busybox", "sh", "-c",
                         "ip -4 -o addr show eth0; hostname; cat /etc/hosts; wget -q -O- http://127.0.0.1/hostname",
                         check=True).stdout
        assert f"inet {ip}/" in out
        assert out.count(web[:12]) >= 3  # hostname, /etc/hosts entry, httpd's /etc/hostname via 127.0.0.1
        assert f"{ip}\t{web[:12]}" in out
        joined = net.docker("run", "-d", "--network", f"container:{web[:10]}", "busybox", "sleep", "300",
                            check=True).stdout.strip()
        jinfo = inspect(net, joined)
        assert jinfo["HostConfig"]["NetworkMode"] == f"container:{web}"
        assert jinfo["Config"]["Hostname"] == web[:12]
        assert jinfo["NetworkSettings"]["Networks"] == {} and jinfo["NetworkSettings"]["IPAddress"] == ""
        assert f"inet {ip}/" in net.docker("exec", joined, "ip", "-4", "-o", "addr", check=True).stdout
        assert f"veth{joined[:7]}" not in links()
        refused = net.docker("network", "connect", "bridge", joined)
        assert refused.returncode != 0 and "container sharing network namespace with another container or host " \
            "cannot be connected to any other network" in refused.stderr
        net.docker("rm", "-f", joined, check=True)
        # the target must be running, and exist
        stopped = net.docker("create", "--name", "adk-cm-stopped", "busybox", "true", check=True).stdout.strip()
        bad = net.docker("run", "--rm", "--network", "container:adk-cm-stopped", "busybox", "true")
        assert bad.returncode != 0
        assert "cannot join network of a non running container: " in bad.stderr, bad.stderr
        cid = net.json("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                                      "HostConfig": {"NetworkMode": "container:adk-cm-stopped"}})
        status, body = net.api("POST", f"/containers/{cid['Id']}/start")  # type: ignore[index]
        assert status == 409 and json.loads(body)["message"] == \
            f"cannot join network of a non running container: {stopped}"
        net.api("DELETE", f"/containers/{cid['Id']}?force=1")  # type: ignore[index]
        cid = net.json("POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                                      "HostConfig": {"NetworkMode": "container:adk-cm-nope"}})
        status, body = net.api("POST", f"/containers/{cid['Id']}/start")  # type: ignore[index]
        assert status == 404 and json.loads(body)["message"] == "No such container: adk-cm-nope"
        net.api("DELETE", f"/containers/{cid['Id']}?force=1")  # type: ignore[index]
        net.docker("rm", stopped, check=True)
    finally:
        net.docker("rm", "-f", web, "adk-cm-stopped")
        if joined:
            net.docker("rm", "-f", joined)


def test_container_network_mode_survives_daemon_restart(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    try:
        web = run_web(d, "--name", "adk-cmr-web")
        joined = d.docker("run", "-d", "--network", "container:adk-cmr-web", "busybox", "sleep", "300",
                          check=True).stdout.strip()
        ip = inspect(d, web)["NetworkSettings"]["IPAddress"]
        d.kill9()
        d.start()
        info = inspect(d, joined)
        assert info["State"]["Running"] and info["HostConfig"]["NetworkMode"] == f"container:{web}"
        out = d.docker("exec", joined, "sh", "-c", "ip -4 -o addr show eth0; for i in $(seq 50); do "
                       "wget -q -O- http://127.0.0.1/hostname && exit 0; sleep 0.1; done; exit 1")
        assert out.returncode == 0 and f"inet {ip}/" in out.stdout and web[:12] in out.stdout, out.stderr
        d.docker("rm", "-f", joined, web, check=True)
        assert_no_endpoints(d)
    finally:
        force_clean(d, [d.bridge_name])


@pytest.mark.parametrize(("config", "host_config", "message"), [
    ({"Hostname": "x"}, {}, "conflicting options: hostname and the network mode"),
    ({}, {"Dns": ["1.1.1.1"]}, "conflicting options: dns and the network mode"),
    ({}, {"ExtraHosts": ["a:1.2.3.4"]}, "conflicting options: custom host-to-IP mapping and the network mode"),
    ({"MacAddress": "02:42:ac:11:00:09"}, {}, "conflicting options: mac-address and the network mode"),
    ({}, {"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}},
     "conflicting options: port publishing and the container type network mode"),
    ({}, {"PublishAllPorts": True}, "conflicting options: port publishing and the container type network mode"),
    ({"ExposedPorts": {"80/tcp": {}}}, {}, "conflicting options: port exposing and the container type network mode"),
    ({}, {"Links": ["a:b"]}, "conflicting options: container type network can't be used with links. This would "
                             "result in undefined behavior"),
])
def test_container_network_mode_conflicts(net: Daemon, config: dict[str, object], host_config: dict[str, object],
                                          message: str) -> None:
    body = {"Image": "busybox", "Cmd": ["true"], **config,
            "HostConfig": {"NetworkMode": "container:whatever", **host_config}}
    status, data = net.api("POST", "/containers/create", body)
    assert status == 400 and json.loads(data) == {"message": message}


def test_container_network_mode_conflicts_cli(net: Daemon) -> None:
    for args, message in ((["-p", "8080:80"], "port publishing and the container type network mode"),
                          (["--hostname", "h"], "hostname and the network mode"),
                          (["--dns", "1.1.1.1"], "dns and the network mode"),
                          (["--add-host", "a:1.2.3.4"], "custom host-to-IP mapping and the network mode"),
                          (["--mac-address", "02:42:ac:11:00:09"], "mac-address and the network mode")):
        out = net.docker("create", "--network", "container:whatever", *args, "busybox", "true")
        assert out.returncode != 0 and f"conflicting options: {message}" in out.stderr, (args, out.stderr)
    status, data = net.api("POST", "/containers/create", {"Image": "busybox", "HostConfig": {"NetworkMode":
                                                                                            "container:"}})
    assert status == 400
    assert json.loads(data)["message"] == "Invalid network mode: invalid container format container:<name|id>"
    assert not json.loads(net.api("GET", "/containers/json?all=1")[1])


def test_ps_filters_publish_expose_network(net: Daemon) -> None:
    port = free_port()
    nid = net.docker("network", "create", "--subnet", subnet_for(net, 224), "adk-psf", check=True).stdout.strip()
    try:
        web = run_web(net, "--name", "adk-psf-web", "--network", "adk-psf", "-p", f"127.0.0.1:{port}:80",
                      "--expose", "8080")
        plain = net.docker("run", "-d", "--name", "adk-psf-plain", "busybox", "sleep", "300",
                           check=True).stdout.strip()

        def ps(*filters: str) -> set[str]:
            args = [a for f in filters for a in ("--filter", f)]
            return set(net.docker("ps", "-q", "--no-trunc", *args, check=True).stdout.split())

        assert ps(f"publish={port}") == {web}
        assert ps(f"publish={port}/tcp") == {web}
        assert ps(f"publish={port}/udp") == set()
        assert ps(f"publish={port - 3}-{port + 3}") == {web}
        assert ps("publish=80") == set()  # the host side, not the container's port
        assert ps("expose=80") == {web}
        assert ps("expose=8080/tcp") == {web}
        assert ps("expose=8000-8100") == {web}
        assert ps("expose=81") == set()
        assert ps("network=adk-psf") == {web}
        assert ps(f"network={nid[:8]}") == {web}
        assert ps("network=bridge") == {plain}
        assert ps("network=adk-psf", "expose=80") == {web}
        assert ps("network=bridge", "expose=80") == set()
        net.docker("stop", "-t", "0", plain, check=True)
        assert {plain} <= set(net.docker("ps", "-aq", "--no-trunc", "--filter", "network=bridge",
                                         check=True).stdout.split())
        for value, message in (
                ("8080:80", "filter for 'publish' should not contain ':': 8080:80"),
                ("abc", 'error while looking up for publish abc: strconv.ParseUint: parsing "abc": invalid syntax'),
                ("90-80", "error while looking up for publish 90-80: Invalid range specified for the Port: 90-80"),
                ("70000", 'error while looking up for publish 70000: strconv.ParseUint: parsing "70000": value out '
                          'of range')):
            status, data = net.api("GET", "/containers/json?filters=" + quote_filters({"publish": [value]}))
            assert status == 400 and json.loads(data)["message"] == message, data
        api = json.loads(net.api("GET", "/containers/json?all=1&filters=" + quote_filters(
            {"expose": ["80/tcp"], "network": [nid]}))[1])
        assert [c["Id"] for c in api] == [web]
        # As Docker lists them: the exposed-only port bare, the published one with its host side (CLI order).
        shown = net.docker("ps", "--filter", f"id={web}", "--format", "{{.Ports}}", check=True).stdout.strip()
        assert shown == f"8080/tcp, 127.0.0.1:{port}->80/tcp", shown
        ports = json.loads(net.api("GET", f"/containers/{web}/json")[1])["NetworkSettings"]["Ports"]
        assert ports == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}], "8080/tcp": None}, ports
        net.docker("rm", "-f", web, plain, check=True)
    finally:
        net.docker("rm", "-f", "adk-psf-web", "adk-psf-plain")
        net.docker("network", "rm", "adk-psf")
        force_clean(net, [f"br-{nid[:12]}"])


def test_userland_proxy_false_serves_ports_with_dnat(fresh_daemon: Daemon) -> None:
    d = fresh_daemon
    before = iptables_save()
    dnat = f"ADK-DNAT-{d.bridge_name}"
    d.stop()
    d.start("--userland-proxy=false")
    web = ""
    try:
        gateway = d.bip.split("/")[0]
        keep = d.docker("run", "-d", "busybox", "sleep", "300", check=True).stdout.strip()  # brings the bridge up
        web = run_web(d, "-p", "127.0.0.1::80", "-p", "127.0.0.1::81/udp", "-p", f"{gateway}::8080")
        wait_http(d, web)
        ip = inspect(d, web)["NetworkSettings"]["IPAddress"]
        port = int(d.docker("port", web, "80/tcp", check=True).stdout.strip().rpartition(":")[2])
        assert http_get(f"http://127.0.0.1:{port}/hostname").strip() == web[:12].encode()
        # a port on the bridge's address: DNAT for another container on the bridge, and hairpin for web itself
        d.docker("exec", "-d", web, "httpd", "-p", "8080", "-h", "/etc", check=True)
        on_gw = int(d.docker("port", web, "8080/tcp", check=True).stdout.strip().rpartition(":")[2])
        for cid in (keep, web):
            out = d.docker("exec", cid, "sh", "-c", f"for i in $(seq 30); do {WGET} http://{gateway}:{on_gw}/hostname "
                           "&& exit 0; sleep 0.2; done; exit 1")
            assert out.returncode == 0 and out.stdout.strip() == web[:12], (cid, out.stdout, out.stderr)
        rules = iptables_save()
        assert f"-A {dnat} -d 127.0.0.1/32 -p tcp -m tcp --dport {port} -j DNAT --to-destination {ip}:80" in rules
        assert f"--to-destination {ip}:81" in rules  # udp too
        assert f"-A OUTPUT -m addrtype --dst-type LOCAL -j {dnat}" in rules
        assert f"-A PREROUTING -m addrtype --dst-type LOCAL -j {dnat}" in rules
        assert Path(f"/proc/sys/net/ipv4/conf/{d.bridge_name}/route_localnet").read_text().strip() == "1"
        # kill -9 leaves the rules: the kernel serves the port with no daemon at all (it is not the proxy) ...
        d.kill9()
        assert http_get(f"http://127.0.0.1:{port}/hostname").strip() == web[:12].encode()
        d.start("--userland-proxy=false")  # ... and the next daemon re-creates exactly one set
        assert http_get(f"http://127.0.0.1:{port}/hostname").strip() == web[:12].encode()
        rules = iptables_save()
        assert rules.count(f"--to-destination {ip}:80\n") == 1
        assert rules.count(f"-j {dnat}") == 2
        # a graceful stop removes the DNAT rules (nothing serves the port while the daemon is away) ...
        d.stop()
        assert dnat not in iptables_save()
        d.start("--userland-proxy=false")  # ... and the next start re-creates them
        assert http_get(f"http://127.0.0.1:{port}/hostname").strip() == web[:12].encode()
        d.docker("stop", "-t", "0", keep, check=True)  # a stopped container's rules go with its endpoint
        assert f"-A {dnat} -d 127.0.0.1/32 -p tcp -m tcp --dport {port} " in iptables_save()
        d.docker("stop", "-t", "0", web, check=True)
        deadline = time.monotonic() + 10  # the endpoint goes right after the exit is reported
        while dnat in iptables_save() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert dnat not in iptables_save()
        d.docker("start", web, check=True)
        wait_http(d, web)
        ip = inspect(d, web)["NetworkSettings"]["IPAddress"]
        port = int(d.docker("port", web, "80/tcp", check=True).stdout.strip().rpartition(":")[2])
        assert http_get(f"http://127.0.0.1:{port}/hostname").strip() == web[:12].encode()
        # kill -9, then a start in the default mode: the stale DNAT rules go, the proxy serves the port
        d.kill9()
        assert dnat in iptables_save()
        d.start()
        assert dnat not in iptables_save()
        assert http_get(f"http://127.0.0.1:{port}/hostname").strip() == web[:12].encode()
        d.docker("rm", "-f", web, keep, check=True)
        web = ""
        after = iptables_save()
        assert dnat not in after and f"{ip}:80\n" not in after and f"ADK-DPOST-{d.bridge_name}" not in after
        with pytest.raises(OSError):
            http_get(f"http://127.0.0.1:{port}/hostname", timeout=1)
        d.stop()
        after = iptables_save()
        assert not ours(d, after, []), ours(d, after, [])  # no chain or rule of this daemon's
        assert not ours(d, before, [])
    finally:
        if web and d.proc is not None:
            d.docker("rm", "-f", web)
        force_clean(d, [d.bridge_name])


def test_userland_proxy_flag_and_daemon_json(tmp_path: Path) -> None:
    from aiodock.daemon.main import config_from_args
    from aiodock.errors import AiodockError

    assert config_from_args([]).userland_proxy is True
    assert config_from_args(["--userland-proxy=false"]).userland_proxy is False
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"userland-proxy": False}))
    assert config_from_args(["--config-file", str(config)]).userland_proxy is False
    assert config_from_args(["--config-file", str(config), "--userland-proxy=true"]).userland_proxy is True
    config.write_text(json.dumps({"userland-proxy": "false"}))
    with pytest.raises(AiodockError, match="cannot unmarshal string into Go struct field Config.userland-proxy of type bool"):
        config_from_args(["--config-file", str(config)])
