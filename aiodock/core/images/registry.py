"""Registry HTTP API v2 client (distribution spec) on aiohttp: manifests, blobs, uploads and authentication.

Authentication follows the ``WWW-Authenticate`` challenge of a 401: ``Basic`` sends the credentials on every
request, ``Bearer`` fetches a token from the challenge's realm (with Basic credentials when given) and caches it
per realm, service, scope and user until it expires. Plain HTTP is used for loopback registries (127.0.0.0/8,
``localhost``, ``::1``) and HTTPS otherwise. Credentials come from the Engine API's ``X-Registry-Auth`` header.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import os
import re
import socket
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import aiohttp

from aiodock.core.images import manifest as mf
from aiodock.core.images.reference import DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN
from aiodock.errors import AiodockError, InvalidArgument, NotFound, Unavailable

DEFAULT_REGISTRY_HOST = "registry-1.docker.io"
MANIFEST_ACCEPT = (mf.DOCKER_MANIFEST, mf.DOCKER_MANIFEST_LIST, mf.OCI_MANIFEST, mf.OCI_INDEX)
MANIFEST_LIMIT = 4 << 20
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
        self.http_status = 404 if status == 404 else 500


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


def is_loopback(domain: str) -> bool:
    host = urlsplit("//" + domain).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def base_url(domain: str) -> str:
    """Where the registry of a reference domain answers: loopback over HTTP, the rest over HTTPS."""
    host = DEFAULT_REGISTRY_HOST if domain == DEFAULT_DOMAIN else domain
    return ("http://" if is_loopback(domain) else "https://") + host


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
    """One registry (by reference domain) for one repository, with the actions the operation needs."""

    def __init__(self, session: aiohttp.ClientSession, domain: str, repository: str, auth: AuthConfig,
                 tokens: TokenCache, actions: str = "pull") -> None:
        self.session = session
        self.domain = domain
        self.repository = repository
        self.auth = auth
        self.tokens = tokens
        self.base = base_url(domain)
        self.scope = f"repository:{repository}:{actions}"
        self._authorization: str | None = None

    # ---- requests and authentication ---------------------------------------------------------------------

    def url(self, path: str) -> str:
        return urljoin(self.base + "/", path.lstrip("/")) if not path.startswith("http") else path

    async def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                      data: Any = None, retry: bool = True) -> aiohttp.ClientResponse:
        """Send a request; on a 401 answer the challenge once and resend. The caller releases the response."""
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
            return await self.session.request(method, url, headers=headers, data=data)
        except aiohttp.ClientError as exc:
            raise Unavailable(f"{method.capitalize()} \"{url}\": {_client_error(exc)}") from None
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
        query = {k: v for k, v in (("service", service), ("scope", scope)) if v}
        if self.auth.has_credentials:
            query.update({"account": self.auth.username, "client_id": "docker", "offline_token": "true"})
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

    async def open_blob(self, digest: str) -> aiohttp.ClientResponse:
        """The GET response of a blob (200 checked); the caller reads and releases it."""
        resp = await self.request("GET", f"/v2/{self.repository}/blobs/{digest}")
        if resp.status != 200:
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

    async def upload_blob(self, digest: str, size: int, body: AsyncIterable[bytes]) -> None:
        """Monolithic upload: POST a new upload session, then PUT the whole blob with its digest."""
        resp = await self.request("POST", f"/v2/{self.repository}/blobs/uploads/",
                                  headers={"Content-Length": "0"})
        try:
            if resp.status != 202:
                raise await registry_error(resp, f"blob upload for {digest}")
            location = resp.headers.get("Location", "")
        finally:
            resp.release()
        if not location:
            raise RegistryError(f"blob upload for {digest}: registry sent no upload location", 500)
        target = urlsplit(urljoin(self.base + "/", location))
        query = urlencode(parse_qsl(target.query, keep_blank_values=True) + [("digest", digest)])
        put_url = urlunsplit((target.scheme, target.netloc, target.path, query, ""))
        resp = await self.request("PUT", put_url, data=body, retry=False, headers={
            "Content-Type": "application/octet-stream", "Content-Length": str(size)})
        try:
            if resp.status not in (201, 204):
                raise await registry_error(resp, f"blob upload for {digest}")
        finally:
            resp.release()

    async def ping(self) -> int:
        """GET /v2/ with whatever authorization the challenge asks for; returns the final status."""
        resp = await self.request("GET", "/v2/")
        try:
            return resp.status
        finally:
            resp.release()


def _basic(auth: AuthConfig) -> str:
    return "Basic " + base64.b64encode(f"{auth.username}:{auth.password}".encode()).decode()


def _client_error(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, socket.gaierror):
            return f"dial tcp: lookup {exc.host}: no such host"
        code = exc.os_error.errno
        reason = os.strerror(code) if code else str(exc.os_error)
        return f"dial tcp {exc.host}:{exc.port}: connect: {reason.lower()}"
    return str(exc) or type(exc).__name__


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
