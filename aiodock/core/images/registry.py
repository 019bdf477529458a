"""Registry HTTP API v2 client (distribution spec) on aiohttp: manifests, blobs, uploads and authentication.

Authentication follows the ``WWW-Authenticate`` challenge of a 401: ``Basic`` sends the credentials on every
request, ``Bearer`` fetches a token from the challenge's realm (with Basic credentials when given) and caches it
per realm, service, scope and user until it expires. Credentials come from the Engine API's ``X-Registry-Auth``.

Endpoints follow dockerd's rules (``RegistryOptions``): a registry is reached over HTTPS with the system CAs plus
the CAs (``*.crt``) and client pair (``*.cert`` + ``*.key``) of its ``<certs dir>/<host[:port]>`` folder; an
insecure registry (loopback, or matched by ``insecure-registries`` as a CIDR or ``host[:port]``) is tried over
HTTPS without verification first, then over plain HTTP. docker.io tries the ``registry-mirrors`` first.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import ipaddress
import json
import os
import re
import socket
import ssl
import time
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import aiohttp

from aiodock.core.images import manifest as mf
from aiodock.core.images.reference import DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN
from aiodock.errors import AiodockError, InvalidArgument, NotFound, Unavailable

DEFAULT_REGISTRY_HOST = "registry-1.docker.io"
MANIFEST_ACCEPT = (mf.DOCKER_MANIFEST, mf.DOCKER_MANIFEST_LIST, mf.OCI_MANIFEST, mf.OCI_INDEX)
MANIFEST_LIMIT = 4 << 20
DEFAULT_CERTS_DIR = Path("/etc/aiodock/certs.d")
DEFAULT_INSECURE_CIDRS = ("::1/128", "127.0.0.0/8")  # always insecure, as in dockerd
UPLOAD_CHUNK = 1 << 20  # blobs larger than this are pushed in PATCH chunks of this size
SOURCE_LABEL = "containerd.io/distribution.source."
USER_AGENT = "aiodock/0.1 (linux) registry-client"
_CHALLENGE_RE = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


class Unauthorized(AiodockError):
    """The registry refused the credentials (HTTP 401, as Docker answers a failed login)."""

    http_status = 401


class RegistryError(AiodockError):
    """An error answer of the registry, worded as Docker words them: ``manifest unknown: manifest unknown``."""

    def __init__(self, message: str, status: int, codes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.codes = codes
        # Never 401 towards the Engine API client for pull/push: the docker CLI answers a 401 with a login prompt.
        # Any other registry failure is the upstream's, not ours: 502 Bad Gateway (dockerd says 500 there).
        self.http_status = 404 if status == 404 else 502


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Docker's AuthConfig as the CLI and docker-py send it (JSON in base64url in ``X-Registry-Auth``)."""

    username: str = ""
    password: str = ""
    server_address: str = ""
    identity_token: str = ""
    registry_token: str = ""

    @classmethod
    def from_json(cls, raw: Any) -> AuthConfig:
        if not isinstance(raw, dict):
            return cls()
        username, password = str(raw.get("username") or ""), str(raw.get("password") or "")
        encoded = raw.get("auth")
        if not username and isinstance(encoded, str) and encoded:
            try:
                username, _, password = base64.b64decode(encoded).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                pass
        return cls(username, password, str(raw.get("serveraddress") or ""),
                   str(raw.get("identitytoken") or ""), str(raw.get("registrytoken") or ""))

    @classmethod
    def from_header(cls, value: str | None) -> AuthConfig:
        """Decode ``X-Registry-Auth`` (padded or not, url-safe or standard alphabet); nonsense gives no auth."""
        if not value:
            return cls()
        text = value.strip()
        text += "=" * (-len(text) % 4)
        try:
            raw = json.loads(base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_")))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return cls()
        return cls.from_json(raw)

    @property
    def has_credentials(self) -> bool:
        return bool(self.username or self.password)


def normalize_server_address(address: str) -> str:
    """The registry domain of a login's ``serveraddress``: ``https://index.docker.io/v1/`` -> ``docker.io``."""
    text = address.strip()
    if "://" in text:
        text = urlsplit(text).netloc
    text = text.split("/", 1)[0]
    if text in ("", LEGACY_DEFAULT_DOMAIN, DEFAULT_REGISTRY_HOST, DEFAULT_DOMAIN):
        return DEFAULT_DOMAIN
    return text


def registry_host(domain: str) -> str:
    """The host[:port] a reference domain is served from (docker.io -> registry-1.docker.io)."""
    return DEFAULT_REGISTRY_HOST if domain == DEFAULT_DOMAIN else domain


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One place to reach a registry: a base URL and how to verify it (``None``: plain HTTP)."""

    base: str
    tls: ssl.SSLContext | None
    mirror: bool = False

    @property
    def ssl(self) -> ssl.SSLContext | bool:
        return self.tls if self.tls is not None else False


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    """dockerd's registry settings: the certs.d folder, insecure registries (CIDRs, host[:port]) and mirrors."""

    certs_dir: Path = DEFAULT_CERTS_DIR
    insecure_registries: tuple[str, ...] = ()
    mirrors: tuple[str, ...] = ()
    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(default=(), repr=False)
    _hosts: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def create(cls, certs_dir: Path | None = None, insecure_registries: tuple[str, ...] | list[str] = (),
               mirrors: tuple[str, ...] | list[str] = ()) -> RegistryOptions:
        """Validated as dockerd validates them; bad values raise InvalidArgument with dockerd's words."""
        networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        hosts: list[str] = []
        for raw in (*insecure_registries, *DEFAULT_INSECURE_CIDRS):  # dockerd appends loopback after the user's
            entry = str(raw)
            if "://" in entry:
                raise InvalidArgument(f"insecure registry {entry} should not contain '://'")
            try:
                net = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                if not entry or "/" in entry or any(c.isspace() for c in entry):
                    raise InvalidArgument(f"insecure registry {entry} is not valid") from None
                if entry not in hosts:
                    hosts.append(entry)
                continue
            if "/" in entry and net not in networks:
                networks.append(net)
            elif "/" not in entry and entry not in hosts:
                hosts.append(entry)  # a bare IP names that index, as Docker reads it
        checked: list[str] = []
        for raw in mirrors:
            checked.append(validate_mirror(str(raw)))
        return cls(certs_dir or DEFAULT_CERTS_DIR, tuple(str(i) for i in insecure_registries), tuple(checked),
                   tuple(networks), tuple(hosts))

    @property
    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return self._networks or tuple(ipaddress.ip_network(c) for c in DEFAULT_INSECURE_CIDRS)

    def info(self) -> dict[str, Any]:
        """``RegistryConfig`` of GET /info."""
        index_configs: dict[str, Any] = {
            DEFAULT_DOMAIN: {"Name": DEFAULT_DOMAIN, "Mirrors": list(self.mirrors), "Secure": True, "Official": True}}
        for host in self._hosts:
            index_configs[host] = {"Name": host, "Mirrors": [], "Secure": False, "Official": False}
        return {"AllowNondistributableArtifactsCIDRs": None, "AllowNondistributableArtifactsHostnames": None,
                "InsecureRegistryCIDRs": [str(n) for n in self.networks], "IndexConfigs": index_configs,
                "Mirrors": list(self.mirrors)}

    async def is_secure(self, domain: str) -> bool:
        """dockerd's isSecureIndex: a configured insecure index, else whether its IPs fall in an insecure CIDR."""
        if domain in self._hosts:  # an index named exactly so (host[:port]), as dockerd's IndexConfigs
            return False
        if domain in (DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN, DEFAULT_REGISTRY_HOST):
            return True
        host = urlsplit("//" + domain).hostname or domain
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            addresses = await _resolve(host)
        return not any(addr in net for addr in addresses for net in self.networks
                       if addr.version == net.version)

    def tls_context(self, host: str, secure: bool) -> ssl.SSLContext:
        """The TLS setup for host[:port]: system CAs plus its certs.d folder, or no verification when insecure.
        Blocking (reads files): async callers use ``asyncio.to_thread``."""
        if not secure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        ctx = ssl.create_default_context()
        folder = self.certs_dir / host
        try:
            names = sorted(os.listdir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return ctx
        except OSError as exc:
            raise InvalidArgument(f"unable to read certs directory {folder}: {exc.strerror}") from None
        for name in names:
            path = folder / name
            try:
                if name.endswith(".crt"):
                    ctx.load_verify_locations(cafile=str(path))
                elif name.endswith(".cert"):
                    key = folder / (name[: -len(".cert")] + ".key")
                    if not key.exists():
                        raise InvalidArgument(f"missing key {key.name} for client certificate {name}. CA "
                                              "certificates must use the extension .crt")
                    ctx.load_cert_chain(str(path), str(key))
                elif name.endswith(".key") and not (folder / (name[: -len(".key")] + ".cert")).exists():
                    raise InvalidArgument(f"missing client certificate {name[:-4]}.cert for key {name}")
            except (ssl.SSLError, OSError) as exc:
                raise InvalidArgument(f"unable to load {path}: {exc}") from None
        return ctx

    async def endpoints(self, domain: str) -> list[Endpoint]:
        """Where to try, in order: mirrors (docker.io only), then HTTPS, then HTTP for an insecure registry."""
        out: list[Endpoint] = []
        if domain == DEFAULT_DOMAIN:
            for mirror in self.mirrors:
                parts = urlsplit(mirror)
                if parts.scheme == "http":
                    out.append(Endpoint(mirror.rstrip("/"), None, True))
                else:
                    secure = await self.is_secure(parts.netloc)
                    tls = await asyncio.to_thread(self.tls_context, parts.netloc, secure)
                    out.append(Endpoint(mirror.rstrip("/"), tls, True))
        host = registry_host(domain)
        secure = await self.is_secure(domain)
        out.append(Endpoint("https://" + host, await asyncio.to_thread(self.tls_context, host, secure)))
        if not secure:
            out.append(Endpoint("http://" + host, None))
        return out


def split_search_term(term: str) -> tuple[str, str]:
    """dockerd's splitReposSearchTerm: (index name, remote term); docker.io unless the first part is a domain."""
    first, sep, rest = term.partition("/")
    if not sep or not ("." in first or ":" in first or first == "localhost"):
        return DEFAULT_DOMAIN, term
    if first in (LEGACY_DEFAULT_DOMAIN, DEFAULT_REGISTRY_HOST):
        return DEFAULT_DOMAIN, rest
    return first, rest


async def search(session: aiohttp.ClientSession, options: RegistryOptions, term: str, limit: int,
                 auth: AuthConfig) -> list[dict[str, Any]]:
    """The v1 search API of the term's index (``/v1/search?q=..&n=..``; docker.io -> index.docker.io), reached
    as dockerd reaches a v1 endpoint: a ``/v1/_ping`` over HTTPS, then over HTTP for an insecure index."""
    index, remote = split_search_term(term)
    host = "index.docker.io" if index == DEFAULT_DOMAIN else index
    secure = await options.is_secure(index)
    endpoints = [Endpoint(f"https://{host}/v1/", await asyncio.to_thread(options.tls_context, host, secure))]
    if not secure:
        endpoints.append(Endpoint(f"http://{host}/v1/", None))
    headers = {"Authorization": _basic(auth)} if auth.has_credentials else {}
    failures: list[str] = []
    chosen: Endpoint | None = None
    for endpoint in endpoints:
        url = endpoint.base + "_ping"
        try:
            async with asyncio.timeout(30):
                async with session.get(url, ssl=endpoint.ssl, headers=headers) as resp:
                    await resp.read()
        except aiohttp.ClientError as exc:
            failures.append(f"Get \"{url}\": {_client_error(exc)}")
            continue
        except ssl.SSLError as exc:
            failures.append(f"Get \"{url}\": {_tls_error(exc)}")
            continue
        except TimeoutError:
            failures.append(f"Get \"{url}\": i/o timeout")
            continue
        chosen = endpoint
        break
    if chosen is None:
        if secure:
            raise InvalidArgument(
                f"invalid registry endpoint {endpoints[0].base}: {failures[0]}. If this private registry supports "
                f"only HTTP or HTTPS with an unknown CA certificate, please add `--insecure-registry {host}` to "
                "the daemon's arguments. In the case of HTTPS, if you have access to the registry's CA "
                "certificate, no need for the flag; simply place the CA certificate at "
                f"{options.certs_dir}/{host}/ca.crt")
        raise InvalidArgument(f"invalid registry endpoint \"{endpoints[-1].base}\". HTTPS attempt: {failures[0]}. "
                              f"HTTP attempt: {failures[-1]}")
    url = chosen.base + "search?" + urlencode({"q": remote, "n": str(limit)})
    try:
        async with asyncio.timeout(60):
            async with session.get(url, ssl=chosen.ssl, headers=headers) as resp:
                if resp.status != 200:
                    raise RegistryError(f"Unexpected status code {resp.status}", resp.status)
                body = await _read_limited(resp, MANIFEST_LIMIT)
    except aiohttp.ClientError as exc:
        raise Unavailable(f"Get \"{url}\": {_client_error(exc)}") from None
    except TimeoutError:
        raise Unavailable(f"Get \"{url}\": i/o timeout") from None
    try:
        raw = json.loads(body)
        results = raw["results"] if isinstance(raw, dict) else None
    except (ValueError, KeyError):
        results = None
    if not isinstance(results, list):
        raise RegistryError(f"error decoding the search results of {url}: not a search answer", 502)
    out = []
    for item in results:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            stars = item.get("star_count")
            out.append({"star_count": stars if isinstance(stars, int) else 0,
                        "is_official": bool(item.get("is_official")), "name": item["name"],
                        "is_automated": bool(item.get("is_automated")),
                        "description": str(item.get("description") or "")})
    return out


def validate_mirror(value: str) -> str:
    """dockerd's ValidateMirror: an http(s) URL without path, query or credentials; a trailing slash added."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise InvalidArgument(f"invalid mirror: unsupported scheme {parts.scheme!r} in {value!r}")
    if parts.username or parts.password:
        raise InvalidArgument(f"invalid mirror: username/password not allowed in URI {value!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or not parts.netloc:
        raise InvalidArgument(f"invalid mirror: path, query, or fragment at end of the URI {value!r}")
    return f"{parts.scheme}://{parts.netloc}/"


async def _resolve(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(5):
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError):
        return []
    out = []
    for info in infos:
        try:
            out.append(ipaddress.ip_address(str(info[4][0]).split("%")[0]))
        except ValueError:
            continue
    return out


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str
    params: dict[str, str]


def parse_challenges(headers: list[str]) -> list[Challenge]:
    """``Bearer realm="https://auth",service="reg",scope="..."`` -> [Challenge("bearer", {...})], one per header."""
    out: list[Challenge] = []
    for header in headers:
        scheme, _, rest = header.strip().partition(" ")
        params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).replace('\\"', '"')
                  for m in _CHALLENGE_RE.finditer(rest)}
        if scheme:
            out.append(Challenge(scheme.lower(), params))
    return out


class TokenCache:
    """Bearer tokens by (realm, service, scope, user), dropped a little before they expire."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, str, str], tuple[str, float]] = {}

    def get(self, key: tuple[str, str, str, str]) -> str | None:
        found = self._tokens.get(key)
        if found is None or found[1] <= time.monotonic():
            self._tokens.pop(key, None)
            return None
        return found[0]

    def put(self, key: tuple[str, str, str, str], token: str, expires_in: float) -> None:
        self._tokens[key] = (token, time.monotonic() + max(expires_in - 10, 1))


def new_session() -> aiohttp.ClientSession:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=120)
    return aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": USER_AGENT})


class RegistryClient:
    """One registry (by reference domain) for one repository, with the actions the operation needs.

    ``endpoints`` are tried in order until one answers over HTTP at all (a TLS or connection failure moves on to
    the next, as dockerd falls back from HTTPS to HTTP for insecure registries); that one is then kept."""

    def __init__(self, session: aiohttp.ClientSession, domain: str, repository: str, auth: AuthConfig,
                 tokens: TokenCache, actions: str = "pull", endpoints: list[Endpoint] | None = None) -> None:
        self.session = session
        self.domain = domain
        self.repository = repository
        self.auth = auth
        self.tokens = tokens
        self.endpoints = endpoints or [Endpoint("https://" + registry_host(domain), ssl.create_default_context())]
        self.endpoint = self.endpoints[0]
        self._pinned = len(self.endpoints) == 1
        self.scope = f"repository:{repository}:{actions}"
        self._authorization: str | None = None

    @classmethod
    async def connect(cls, session: aiohttp.ClientSession, options: RegistryOptions, domain: str,
                      repository: str, auth: AuthConfig, tokens: TokenCache, actions: str = "pull",
                      mirrors: bool = False) -> RegistryClient:
        """A client on the registry's own endpoints (without mirrors unless asked)."""
        found = await options.endpoints(domain)
        if not mirrors:
            found = [e for e in found if not e.mirror]
        return cls(session, domain, repository, auth, tokens, actions, found)

    @property
    def base(self) -> str:
        return self.endpoint.base

    # ---- requests and authentication ---------------------------------------------------------------------

    def url(self, path: str) -> str:
        return urljoin(self.base + "/", path.lstrip("/")) if not path.startswith("http") else path

    async def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                      data: Any = None, retry: bool = True) -> aiohttp.ClientResponse:
        """Send a request; on a 401 answer the challenge once and resend. The caller releases the response."""
        while not self._pinned:
            tried = self.endpoint
            try:
                resp = await self._request(method, path, headers, data, retry)
            except Unavailable:
                if self.endpoint is not tried:  # a concurrent request moved on meanwhile
                    continue
                index = self.endpoints.index(tried)
                if index + 1 >= len(self.endpoints):
                    raise
                self.endpoint = self.endpoints[index + 1]
                self._pinned = index + 2 >= len(self.endpoints)
                continue
            if self.endpoint is tried:
                self._pinned = True
            return resp
        return await self._request(method, path, headers, data, retry)

    async def _request(self, method: str, path: str, headers: dict[str, str] | None, data: Any,
                       retry: bool) -> aiohttp.ClientResponse:
        url = self.url(path)
        hdrs = dict(headers or {})
        if self._authorization:
            hdrs["Authorization"] = self._authorization
        resp = await self._send(method, url, hdrs, data)
        if resp.status == 401 and retry:
            challenge = resp.headers.getall("WWW-Authenticate", [])
            resp.release()
            self._authorization = await self.authorize(challenge, method, url)
            hdrs["Authorization"] = self._authorization
            resp = await self._send(method, url, hdrs, data)
        return resp

    async def _send(self, method: str, url: str, headers: dict[str, str], data: Any) -> aiohttp.ClientResponse:
        try:
            return await self.session.request(method, url, headers=headers, data=data, ssl=self.endpoint.ssl)
        except aiohttp.ClientError as exc:
            raise Unavailable(f"{method.capitalize()} \"{url}\": {_client_error(exc)}") from None
        except ssl.SSLError as exc:
            raise Unavailable(f"{method.capitalize()} \"{url}\": {_tls_error(exc)}") from None
        except TimeoutError:
            raise Unavailable(f"{method.capitalize()} \"{url}\": i/o timeout") from None

    async def authorize(self, header: list[str], method: str, url: str) -> str:
        """The Authorization value answering a WWW-Authenticate challenge."""
        challenges = parse_challenges(header)
        for ch in challenges:
            if ch.scheme == "bearer" and ch.params.get("realm"):
                return "Bearer " + await self._token(ch.params, self.scope, url)
        for ch in challenges:
            if ch.scheme == "basic":
                if not self.auth.has_credentials:
                    raise RegistryError(f"{method.capitalize()} \"{url}\": no basic auth credentials", 0,
                                        ("NO_CREDENTIALS",))
                return _basic(self.auth)
        raise RegistryError(f"{method.capitalize()} \"{url}\": unsupported authentication challenge "
                            f"{', '.join(header)!r}", 0)

    async def _token(self, params: dict[str, str], scope: str, url: str) -> str:
        """A token from the realm; a refusal is worded for the request it was for, as Docker words it:
        ``Get "http://reg/v2/": unauthorized: incorrect username or password``."""
        if self.auth.registry_token:
            return self.auth.registry_token
        realm, service = params["realm"], params.get("service", "")
        key = (realm, service, scope, self.auth.username)
        cached = self.tokens.get(key)
        if cached is not None:
            return cached
        query = [(k, v) for k, v in (("service", service), *(("scope", one) for one in scope.split())) if v]
        if self.auth.has_credentials:
            query += [("account", self.auth.username), ("client_id", "docker"), ("offline_token", "true")]
        token_url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        headers = {"Authorization": _basic(self.auth)} if self.auth.has_credentials else {}
        resp = await self._send("GET", token_url, headers, None)
        try:
            body = await resp.read()
            if resp.status != 200:
                detail = _error_text(body) or f"{resp.status} {resp.reason}"
                if resp.status == 401:
                    reason = _error_text(body) or "incorrect username or password"
                    if not reason.startswith("unauthorized:"):
                        reason = "unauthorized: " + reason
                    raise RegistryError(f"Get \"{url}\": {reason}", 401, ("UNAUTHORIZED",))
                raise RegistryError(f"Get \"{token_url}\": {detail}", resp.status)
        finally:
            resp.release()
        try:
            raw = json.loads(body)
            token = raw.get("token") or raw.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"Get \"{token_url}\": authorization server did not include a token in the "
                                "response", 500)
        expires = raw.get("expires_in")
        self.tokens.put(key, token, float(expires) if isinstance(expires, (int, float)) and expires > 0 else 60)
        return token

    # ---- manifests ---------------------------------------------------------------------------------------

    async def get_manifest(self, reference: str, display: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest or index by tag or digest; the digest is verified."""
        resp = await self.request("GET", f"/v2/{self.repository}/manifests/{reference}",
                                  headers={"Accept": ", ".join(MANIFEST_ACCEPT)})
        try:
            if resp.status != 200:
                raise await registry_error(resp, f"manifest for {display}")
            data = await _read_limited(resp, MANIFEST_LIMIT)
            header_digest = resp.headers.get("Docker-Content-Digest", "")
            content_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        finally:
            resp.release()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if reference.startswith("sha256:") and reference != digest:
            raise InvalidArgument(f"manifest verification failed for digest {reference}")
        if header_digest.startswith("sha256:") and header_digest != digest:
            raise InvalidArgument(f"manifest verification failed for digest {header_digest}")
        media_type = mf.media_type_of(data)
        if media_type not in mf.MANIFEST_TYPES | mf.INDEX_TYPES and content_type in mf.MANIFEST_TYPES | mf.INDEX_TYPES:
            media_type = content_type
        if media_type not in mf.MANIFEST_TYPES | mf.INDEX_TYPES:
            raise InvalidArgument(f"unsupported manifest media type {media_type!r} for {display}")
        return data, media_type, digest

    async def list_tags(self) -> list[str]:
        """GET /v2/<name>/tags/list, following ``Link: <...>; rel="next"`` pages."""
        path: str | None = f"/v2/{self.repository}/tags/list"
        tags: list[str] = []
        while path is not None:
            resp = await self.request("GET", path)
            try:
                if resp.status != 200:
                    raise await registry_error(resp, f"tags of {self.repository}")
                data = await _read_limited(resp, MANIFEST_LIMIT)
                link = resp.headers.get("Link", "")
            finally:
                resp.release()
            try:
                found = json.loads(data).get("tags") or []
            except (ValueError, AttributeError):
                found = []
            tags += [t for t in found if isinstance(t, str)]
            m = re.match(r"\s*<([^>]+)>\s*;\s*rel=\"?next\"?", link)
            path = m.group(1) if m else None
        return tags

    async def put_manifest(self, reference: str, data: bytes, media_type: str) -> str:
        resp = await self.request("PUT", f"/v2/{self.repository}/manifests/{reference}", data=data,
                                  headers={"Content-Type": media_type})
        try:
            if resp.status not in (200, 201, 202):
                raise await registry_error(resp, f"manifest {reference}")
            return resp.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(data).hexdigest()
        finally:
            resp.release()

    # ---- blobs -------------------------------------------------------------------------------------------

    async def open_blob(self, digest: str, offset: int = 0) -> aiohttp.ClientResponse:
        """The GET response of a blob (200, or 206 when resuming at ``offset`` and the registry serves ranges);
        the caller reads and releases it."""
        headers = {"Range": f"bytes={offset}-"} if offset else None
        resp = await self.request("GET", f"/v2/{self.repository}/blobs/{digest}", headers=headers)
        if resp.status not in ((200, 206) if offset else (200,)):
            try:
                raise await registry_error(resp, f"blob {digest}")
            finally:
                resp.release()
        return resp

    async def get_blob(self, digest: str, limit: int) -> bytes:
        """A small blob (an image config) in memory, digest verified."""
        resp = await self.open_blob(digest)
        try:
            data = await _read_limited(resp, limit)
        except aiohttp.ClientPayloadError:
            raise Unavailable(f"failed to fetch blob {digest}: unexpected EOF") from None
        finally:
            resp.release()
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise InvalidArgument(f"blob verification failed for digest {digest}")
        return data

    async def blob_exists(self, digest: str) -> bool:
        resp = await self.request("HEAD", f"/v2/{self.repository}/blobs/{digest}")
        try:
            if resp.status == 200:
                return True
            if resp.status == 404:
                return False
            raise await registry_error(resp, f"blob {digest}")
        finally:
            resp.release()

    async def start_upload(self, digest: str, mount_from: str | None = None) -> str | None:
        """POST a new upload session; with ``mount_from`` ask for a cross-repository mount first.
        None when the registry mounted the blob (201), else the upload location."""
        path = f"/v2/{self.repository}/blobs/uploads/"
        if mount_from:
            path += "?" + urlencode({"mount": digest, "from": mount_from})
            source_scope = f"repository:{mount_from}:pull"
            if source_scope not in self.scope.split():  # a token for the mount must cover the source too
                self.scope = f"{self.scope} {source_scope}".strip()
        resp = await self.request("POST", path, headers={"Content-Length": "0"})
        try:
            if mount_from and resp.status == 201:
                return None
            if resp.status != 202:
                raise await registry_error(resp, f"blob upload for {digest}")
            location = resp.headers.get("Location", "")
        finally:
            resp.release()
        if not location:
            raise RegistryError(f"blob upload for {digest}: registry sent no upload location", 500)
        return urljoin(self.base + "/", location)

    async def _patch(self, location: str, data: bytes | AsyncIterable[bytes], headers: dict[str, str],
                     what: str) -> str:
        """One PATCH of an upload session; returns the session's next location."""
        resp = await self.request("PATCH", location, data=data, retry=False,
                                  headers={"Content-Type": "application/octet-stream", **headers})
        try:
            if resp.status != 202:
                raise await registry_error(resp, f"blob upload for {what}")
            return urljoin(self.base + "/", resp.headers.get("Location", "") or location)
        finally:
            resp.release()

    async def upload_blob(self, digest: str | Callable[[], str], size: int | None, body: AsyncIterable[bytes],
                          location: str | None = None) -> None:
        """Upload a blob into a session (a new one unless ``location``): in one PUT when it is small, else
        PATCH chunks of ``UPLOAD_CHUNK`` bytes with Content-Range, then the closing PUT with the digest.

        A blob made while it streams (a layer compressed on push) has no size yet (``size`` None): it goes in
        one PATCH with a chunked body, as Docker sends it, and its digest is known only once ``body`` is
        exhausted: ``digest`` is then a callable asked for it before the closing PUT."""
        known = digest if isinstance(digest, str) else "a layer compressed for push"
        if location is None:
            location = await self.start_upload(known)
            assert location is not None
        if size is None:  # one streamed PATCH (chunked transfer encoding), as Docker sends a layer it compresses
            location = await self._patch(location, body, {}, known)
            body, size = _empty(), 0
        elif size > UPLOAD_CHUNK:
            offset = 0
            async for chunk in _rechunk(body, UPLOAD_CHUNK):
                location = await self._patch(location, chunk, {
                    "Content-Length": str(len(chunk)), "Content-Range": f"{offset}-{offset + len(chunk) - 1}"}, known)
                offset += len(chunk)
            body, size = _empty(), 0
        blob_digest = digest if isinstance(digest, str) else digest()
        target = urlsplit(location)
        query = urlencode(parse_qsl(target.query, keep_blank_values=True) + [("digest", blob_digest)])
        put_url = urlunsplit((target.scheme, target.netloc, target.path, query, ""))
        resp = await self.request("PUT", put_url, data=body, retry=False, headers={
            "Content-Type": "application/octet-stream", "Content-Length": str(size)})
        try:
            if resp.status not in (201, 204):
                raise await registry_error(resp, f"blob upload for {blob_digest}")
        finally:
            resp.release()

    async def ping(self) -> int:
        """GET /v2/ with whatever authorization the challenge asks for; returns the final status."""
        resp = await self.request("GET", "/v2/")
        try:
            return resp.status
        finally:
            resp.release()


async def _rechunk(body: AsyncIterable[bytes], size: int) -> AsyncIterable[bytes]:
    buf = bytearray()
    async for data in body:
        buf += data
        while len(buf) >= size:
            yield bytes(buf[:size])
            del buf[:size]
    if buf:
        yield bytes(buf)


async def _empty() -> AsyncIterable[bytes]:
    return
    yield b""


def _basic(auth: AuthConfig) -> str:
    return "Basic " + base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()


def _client_error(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        if isinstance(cert_error, ssl.SSLCertVerificationError):
            return "tls: failed to verify certificate: " + _x509_text(cert_error, exc.host)
        return f"tls: failed to verify certificate: x509: {cert_error}"
    if isinstance(exc, aiohttp.ClientConnectorSSLError):
        return _tls_error(exc.os_error) if isinstance(exc.os_error, ssl.SSLError) else str(exc.os_error)
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, socket.gaierror):
            return f"dial tcp: lookup {exc.host}: no such host"
        code = exc.os_error.errno
        reason = os.strerror(code) if code else str(exc.os_error)
        return f"dial tcp {exc.host}:{exc.port}: connect: {reason.lower()}"
    if isinstance(exc, aiohttp.ClientOSError) and isinstance(exc.__cause__ or exc.__context__, ssl.SSLError):
        cause = exc.__cause__ or exc.__context__
        assert isinstance(cause, ssl.SSLError)
        return _tls_error(cause)
    text = str(exc)
    if "CERTIFICATE_REQUIRED" in text.upper() or "certificate required" in text:
        return "remote error: tls: certificate required"
    return text or type(exc).__name__


def _x509_text(err: ssl.SSLCertVerificationError, host: str) -> str:
    """Go's x509 wording for OpenSSL's verification failures."""
    code = err.verify_code
    if code in (18, 19, 20, 21):  # self-signed (in chain), unable to get (local) issuer, unable to verify leaf
        return "x509: certificate signed by unknown authority"
    if code == 62:  # hostname mismatch
        return f"x509: certificate is not valid for {host}"
    if code == 10:
        return "x509: certificate has expired or is not yet valid"
    return f"x509: {err.verify_message or err}"


def _tls_error(err: ssl.SSLError) -> str:
    reason = (err.reason or "").upper()
    if reason in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
        return "http: server gave HTTP response to HTTPS client"
    if "CERTIFICATE_REQUIRED" in reason:
        return "remote error: tls: certificate required"
    if "BAD_CERTIFICATE" in reason or "UNKNOWN_CA" in reason:
        return "remote error: tls: bad certificate"
    if isinstance(err, ssl.SSLCertVerificationError):
        return "tls: failed to verify certificate: " + _x509_text(err, "")
    return f"tls: {err.reason.lower().replace('_', ' ') if err.reason else err}"


async def _read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    out = bytearray()
    async for chunk in resp.content.iter_chunked(64 << 10):
        out += chunk
        if len(out) > limit:
            raise InvalidArgument(f"{resp.url}: answer larger than {limit} bytes")
    return bytes(out)


def _error_text(body: bytes) -> str:
    """``code: message`` of each error in a registry error body, as the distribution client prints them."""
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    items = raw.get("errors") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        if isinstance(raw, dict) and isinstance(raw.get("details"), str):
            return str(raw["details"])
        return ""
    texts = []
    for item in items:
        if isinstance(item, dict):
            code = str(item.get("code") or "unknown").lower().replace("_", " ")
            texts.append(f"{code}: {item.get('message') or code}")
    return ", ".join(texts)


async def registry_error(resp: aiohttp.ClientResponse, what: str) -> AiodockError:
    """The error for a failed registry answer: NotFound for unknown manifests and blobs, Unauthorized/denied."""
    try:
        body = await resp.content.read(64 << 10)
    except aiohttp.ClientError:
        body = b""
    text = _error_text(body)
    codes: tuple[str, ...] = ()
    try:
        raw = json.loads(body)
        codes = tuple(str(e.get("code")) for e in raw.get("errors", []) if isinstance(e, dict))
    except (ValueError, UnicodeDecodeError, AttributeError):
        pass
    if resp.status == 404 and what.startswith("manifest"):
        return NotFound(f"{what} not found: {text or 'manifest unknown: manifest unknown'}")
    if resp.status == 401:
        return RegistryError(text or "unauthorized: authentication required", 401, codes)
    if resp.status == 403:
        return RegistryError(text or "denied: requested access to the resource is denied", 403, codes)
    return RegistryError(text or f"{what}: unexpected status from {resp.method} request to {resp.url}: "
                                 f"{resp.status} {resp.reason}", resp.status, codes)
