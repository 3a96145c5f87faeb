"""Docker image references: parse, validate and normalize by Docker's reference grammar.

The grammar is distribution's (reference/reference.go, as vendored by Docker 20.10):

    reference   := name [ ":" tag ] [ "@" digest ]
    name        := [domain "/"] path-component ["/" path-component]*
    domain      := host [":" port]        host: domain-name | IPv4 | "[" IPv6 "]"
    path-comp.  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
    tag         := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
    digest      := algorithm ":" hex      (sha256: 64 lowercase hex digits)

The first "/"-separated part is a registry host only when it contains "." or ":" or is
"localhost"; otherwise the name lives on Docker Hub (docker.io, with "library/" for one-part names).
Errors say which part is wrong and why, so an operator can fix the inventory in one go.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ipaddress

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
NAME_TOTAL_LENGTH_MAX = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$"
)
# A path component of a repository name (regdeploy.access checks rule patterns with it too).
PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_COMPONENT_RE = re.compile(rf"^{PATH_COMPONENT}$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX64_RE = re.compile(r"^[a-f0-9]{64}$")


class ReferenceError(ValueError):
    """An image reference that Docker would refuse; the message names the part and the reason."""


@dataclass(frozen=True)
class Reference:
    domain: str  # registry host[:port], "docker.io" when none was given
    path: str  # repository path inside the registry, e.g. "library/busybox", "lab/busybox"
    tag: str | None
    digest: str | None

    @property
    def repository(self) -> str:
        return f"{self.domain}/{self.path}"

    @property
    def familiar_path(self) -> str:
        """The path as people write it: "busybox" rather than "library/busybox" on Docker Hub."""
        if self.domain == DEFAULT_DOMAIN and self.path.startswith(OFFICIAL_PREFIX):
            return self.path[len(OFFICIAL_PREFIX):]
        return self.path

    @property
    def normalized(self) -> str:
        """Fully qualified form, with the implicit ":latest" when neither tag nor digest is given."""
        tag = self.tag if self.tag or self.digest else "latest"
        return self.repository + (f":{tag}" if tag else "") + (f"@{self.digest}" if self.digest else "")

    @property
    def familiar(self) -> str:
        name = self.familiar_path if self.domain == DEFAULT_DOMAIN else self.repository
        return name + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def in_registry(self, registry: str) -> "Reference":
        """The same image named inside another registry (how `docker tag` for a push names it)."""
        return Reference(domain=registry, path=self.familiar_path, tag=self.tag or "latest", digest=None)


def parse(reference: str) -> Reference:
    if not isinstance(reference, str) or reference == "":
        raise ReferenceError("the image reference is empty")
    if any(ch.isspace() for ch in reference):
        raise ReferenceError(f"whitespace is not allowed in an image reference: {reference!r}")
    if _HEX64_RE.match(reference):
        raise ReferenceError(f"{reference!r} is a 64-character hex string (an image ID), not a name")

    name_and_tag, at, digest = reference.partition("@")
    if at:
        _check_digest(digest, reference)
    domain, remainder = _split_domain(name_and_tag)
    path, colon, tag = remainder.rpartition(":") if ":" in remainder else (remainder, "", "")
    if colon:
        _check_tag(tag, reference)

    if domain:
        if not _DOMAIN_RE.match(domain):
            raise ReferenceError(
                f"the registry host {domain!r} in {reference!r} is invalid: expected a host name, "
                "an IPv4 address or [IPv6], optionally followed by :port"
            )
    _check_path(path, reference)
    full_name = f"{domain}/{path}" if domain else path
    if len(full_name) > NAME_TOTAL_LENGTH_MAX:
        raise ReferenceError(
            f"the repository name in {reference!r} is {len(full_name)} characters long; "
            f"the limit is {NAME_TOTAL_LENGTH_MAX}"
        )

    if domain in ("", LEGACY_DEFAULT_DOMAIN):
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    return Reference(domain=domain, path=path, tag=tag if colon else None, digest=digest if at else None)


def ip_address(host: str) -> "ipaddress.IPv4Address | ipaddress.IPv6Address | None":
    """The address a host names literally (IPv4, or IPv6 bracketed as in a reference's domain), or None
    for a name."""
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def is_valid(reference: str) -> bool:
    try:
        parse(reference)
    except ReferenceError:
        return False
    return True


def _split_domain(name: str) -> tuple[str, str]:
    slash = name.find("/")
    if slash == -1:
        return "", name
    first = name[:slash]
    if "." in first or ":" in first or first == "localhost":
        return first, name[slash + 1:]
    return "", name


def _check_digest(digest: str, reference: str) -> None:
    algorithm, colon, hex_part = digest.partition(":")
    if not colon or not algorithm or not hex_part:
        raise ReferenceError(f"the digest {digest!r} in {reference!r} must look like sha256:<64 hex digits>")
    expected = _DIGEST_HEX_LENGTH.get(algorithm)
    if expected is None:
        raise ReferenceError(f"the digest algorithm {algorithm!r} in {reference!r} is not supported "
                             f"(use one of {', '.join(_DIGEST_HEX_LENGTH)})")
    if len(hex_part) != expected or not re.fullmatch(r"[a-f0-9]+", hex_part):
        raise ReferenceError(f"the {algorithm} digest in {reference!r} must be {expected} lowercase hex "
                             f"digits (got {len(hex_part)} characters)")


def _check_tag(tag: str, reference: str) -> None:
    if tag == "":
        raise ReferenceError(f"the tag in {reference!r} is empty: drop the ':' or give a tag")
    if len(tag) > 128:
        raise ReferenceError(f"the tag in {reference!r} is {len(tag)} characters long; the limit is 128")
    if not _TAG_RE.match(tag):
        if tag[0] in ".-":
            raise ReferenceError(f"the tag {tag!r} in {reference!r} must not start with {tag[0]!r}")
        bad = next(ch for ch in tag if not (ch.isascii() and (ch.isalnum() or ch in "_.-")))
        raise ReferenceError(f"character {bad!r} is not allowed in the tag {tag!r} of {reference!r} "
                             "(allowed: letters, digits, '_', '.', '-')")


def _check_path(path: str, reference: str) -> None:
    if path == "":
        raise ReferenceError(f"the repository name in {reference!r} is empty")
    if path != path.lower():
        raise ReferenceError(f"uppercase letters are not allowed in the repository name {path!r}")
    for component in path.split("/"):
        if component == "":
            raise ReferenceError(f"the repository name {path!r} has an empty path component (check '/')")
        if _PATH_COMPONENT_RE.match(component):
            continue
        bad = next((ch for ch in component if not (ch.isascii() and (ch.isalnum() or ch in "._-"))), None)
        if bad is not None:
            raise ReferenceError(f"character {bad!r} is not allowed in the repository name {path!r} "
                                 "(allowed: lowercase letters, digits, '.', '_', '__', '-')")
        if not (component[0].isalnum() and component[-1].isalnum()):
            raise ReferenceError(f"the path component {component!r} of {path!r} must start and end "
                                 "with a lowercase letter or digit")
        raise ReferenceError(f"the path component {component!r} of {path!r} has an invalid separator: "
                             "use '.', '_', '__' or dashes between letters and digits")
