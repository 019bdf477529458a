"""Docker image references: parsing, normalisation (``busybox`` -> ``docker.io/library/busybox:latest``), display.

Grammar as in the distribution reference spec; error texts as Docker prints them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiodock.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"

REFERENCE_RE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$")
TAG_RE = re.compile(rf"^{_TAG}$")
ANCHORED_ID_RE = re.compile(r"^[a-f0-9]{64}$")
_DOMAIN_PART_RE = re.compile(rf"^{_DOMAIN}$")


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalised reference: domain, path (``library/busybox``), optional tag and digest."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """Full repository name: ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """Short repository name for display: ``busybox``, ``myhost:5000/app``."""
        if self.domain == DEFAULT_DOMAIN:
            return self.path.removeprefix(OFFICIAL_REPO_PREFIX) if self.path.count("/") == 1 else self.path
        return self.name

    def __str__(self) -> str:
        return self.name + self._suffix()

    def familiar(self) -> str:
        """Display form: ``busybox:latest``, ``busybox@sha256:...``."""
        return self.familiar_name + self._suffix()

    def with_default_tag(self) -> Reference:
        """Add ``:latest`` when neither a tag nor a digest is given (Docker's TagNameOnly)."""
        if self.tag is None and self.digest is None:
            return Reference(self.domain, self.path, DEFAULT_TAG, None)
        return self

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, validate_tag(tag), None)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.domain, self.path, None, digest)

    def _suffix(self) -> str:
        out = ""
        if self.tag is not None:
            out += ":" + self.tag
        if self.digest is not None:
            out += "@" + self.digest
        return out


def validate_tag(tag: str) -> str:
    if not TAG_RE.match(tag):
        raise InvalidArgument(f"invalid tag format: {tag!r}" if tag else "invalid reference format")
    return tag


def parse_normalized(ref: str) -> Reference:
    """Parse a user-given reference (familiar or full) into a normalised Reference, as Docker's ParseNormalizedNamed."""
    if not ref:
        raise InvalidArgument("invalid reference format")
    if ANCHORED_ID_RE.match(ref):
        raise InvalidArgument(f"invalid repository name ({ref}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_domain(ref)
    remote = remainder.split("@", 1)[0].split(":", 1)[0] if ":" in remainder or "@" in remainder else remainder
    if remote.lower() != remote:
        raise InvalidArgument("invalid reference format: repository name (" + remote + ") must be lowercase")
    m = REFERENCE_RE.match(f"{domain}/{remainder}")
    if not m:
        raise InvalidArgument("invalid reference format")
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgument(f"invalid reference format: repository name must not be more than "
                              f"{NAME_TOTAL_LENGTH_MAX} characters")
    if digest is not None:
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256" or len(hexpart) != 64 or hexpart.lower() != hexpart:
            raise InvalidArgument("invalid reference format")
    domain_out, _, path = name.partition("/")
    return Reference(domain_out, path, tag, digest)


def parse_repository_and_tag(repo: str, tag: str | None) -> Reference:
    """The ``docker tag``/``import`` pair: repo may carry its own tag; a digest is refused."""
    ref = parse_normalized(repo)
    if ref.digest is not None:
        raise InvalidArgument("refusing to create a tag with a digest reference")
    if tag:
        ref = ref.with_tag(tag)
    return ref.with_default_tag()


def _split_domain(ref: str) -> tuple[str, str]:
    first, sep, rest = ref.partition("/")
    if not sep or (
        "." not in first and ":" not in first and first != "localhost" and first.lower() == first
    ):
        domain, remainder = DEFAULT_DOMAIN, ref
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def familiar_match(pattern: str, ref: Reference) -> bool:
    """Docker's reference filter: glob on ``name:tag`` and on the bare name (``busybox`` matches all tags)."""
    import fnmatch

    def match(value: str) -> bool:
        return fnmatch.fnmatchcase(value, pattern)

    return match(ref.familiar()) or match(ref.familiar_name) or match(str(ref)) or match(ref.name)
