"""Listeners: tcp, tcp+TLS with client-certificate verification, systemd socket activation, bad hosts."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from aiodock.api import TLSConfig, serve
from aiodock.errors import InvalidArgument


def _port(runner: web.AppRunner) -> int:
    return int(runner.addresses[0][1])


async def test_tcp(app: web.Application) -> None:
    runner = await serve(app, ["tcp://127.0.0.1:0"])
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{_port(runner)}/v1.44/_ping") as resp:
                assert await resp.text() == "OK"
                assert resp.headers["Api-Version"] == "1.44"
    finally:
        await runner.cleanup()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_pki(d: Path) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem",
             "-days", "1", "-subj", "/CN=test-ca", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "1", "-extfile", "ext.cnf", cwd=d)


async def test_tcp_tls_verify(app: web.Application, tmp_path: Path) -> None:
    await asyncio.to_thread(_make_pki, tmp_path)
    tls = TLSConfig(cert=tmp_path / "server.pem", key=tmp_path / "server-key.pem", ca=tmp_path / "ca.pem",
                    verify=True)
    runner = await serve(app, ["tcp://127.0.0.1:0"], tls=tls)
    url = f"https://127.0.0.1:{_port(runner)}/_ping"
    try:
        with_cert = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        with_cert.load_cert_chain(str(tmp_path / "client.pem"), str(tmp_path / "client-key.pem"))
        async with aiohttp.ClientSession() as session:
            async with session.get(url, ssl=with_cert) as resp:
                assert await resp.text() == "OK"
            without_cert = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
            with pytest.raises(aiohttp.ClientError):
                async with session.get(url, ssl=without_cert) as resp:
                    await resp.read()
    finally:
        await runner.cleanup()


async def test_socket_activation(tmp_path: Path) -> None:
    """A child process gets a listening socket at fd 3 with LISTEN_FDS/LISTEN_PID, as systemd hands it over."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    script = textwrap.dedent(f"""
        import asyncio, os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from api_fakes import Containers, Images, System
        from aiodock.api import create_app, serve
        os.dup2({listener.fileno()}, 3)
        os.environ["LISTEN_FDS"] = "1"
        os.environ["LISTEN_PID"] = str(os.getpid())
        async def main():
            runner = await serve(create_app(containers=Containers(), images=Images(), system=System()), ["fd://"])
            assert "LISTEN_FDS" not in os.environ
            print("ready", flush=True)
            await asyncio.sleep(30)
        asyncio.run(main())
    """)
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", script, pass_fds=(listener.fileno(),),
                                                 stdout=asyncio.subprocess.PIPE)
    listener.close()
    try:
        assert child.stdout is not None
        while (line := await asyncio.wait_for(child.stdout.readline(), 20)) != b"ready\n":
            assert line, "the child died before listening"  # (structlog's default output goes to stdout too)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/_ping") as resp:
                assert await resp.text() == "OK"
    finally:
        child.kill()
        await child.wait()


async def test_socket_activation_without_fds(app: web.Application, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LISTEN_FDS", raising=False)
    with pytest.raises(InvalidArgument, match="no sockets found via socket activation"):
        await serve(app, ["fd://"])


@pytest.mark.parametrize("host", ["udp://x:1", "unix://relative.sock", "tcp://127.0.0.1:notaport"])
async def test_bad_hosts(app: web.Application, host: str) -> None:
    with pytest.raises(InvalidArgument):
        await serve(app, [host])


async def test_stale_socket_is_replaced(app: web.Application, tmp_path: Path) -> None:
    path = Path("/tmp") / f"aiodock-stale-{tmp_path.name}.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: a crashed daemon's leftover
    try:
        runner = await serve(app, [f"unix://{path}"])
        await runner.cleanup()
    finally:
        path.unlink(missing_ok=True)
