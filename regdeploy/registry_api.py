"""Client for the registry HTTP API v2: catalog and tags with pagination, manifest digests.

Pagination follows the spec: ask for `n` entries, then follow the `Link: <...>; rel="next"`
header until there is none, so a registry with thousands of repositories lists completely.

Authentication as the registry asks for it: basic (htpasswd), or a bearer token (registry_access,
distribution's token authentication). A `401` with `WWW-Authenticate: Bearer realm=...` is answered
by asking the realm for a token for the challenge's scope, with the credentials as basic
authentication, and sending the request again with it; tokens are kept per scope for this client.
"""

from __future__ import annotations

from typing import Iterator
from urllib.parse import urljoin, urlsplit

import re

import requests

from . import __version__

MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])


class RegistryError(Exception):
    """A registry answer (or its absence) explained for an operator; `status` is the HTTP code."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def base_url(registry: str, tls: bool = False) -> str:
    if registry.startswith(("http://", "https://")):
        return registry.rstrip("/")
    return f"{'https' if tls else 'http'}://{registry}"


def bearer_challenge(header: str) -> dict[str, str] | None:
    """The parameters of a `WWW-Authenticate: Bearer k="v",...` challenge; None for another scheme."""
    if not header.lower().startswith("bearer "):
        return None
    return dict(re.findall(r'(\w+)="([^"]*)"', header[7:]))


class _Bearer(requests.auth.AuthBase):
    def __init__(self, token: str):
        self.token = token

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class RegistryClient:
    def __init__(self, url: str, timeout: float = 10.0, auth: tuple[str, str] | None = None,
                 verify: bool | str = True, realm_hosts: dict[str, str] | None = None):
        """`realm_hosts`: {name: address} for a token realm's host the controller reaches by another
        address (the realm names registry_host, which only the fleet may resolve)."""
        self.url = url.rstrip("/")
        self.realm_hosts = realm_hosts or {}
        self.timeout = timeout
        self.session = requests.Session()
        self.session.auth = auth
        # Not a pull in the registry's access log (retention's `pulled=` reads it).
        self.session.headers["User-Agent"] = f"regdeploy/{__version__}"
        # Passed with each request: requests lets $REQUESTS_CA_BUNDLE override a session's `verify`
        # (psf/requests#3829), which would replace the registry's CA with the system bundle.
        self.verify = verify
        self._tokens: dict[tuple[str, str, str], str] = {}

    def _token(self, challenge: dict[str, str], what: str) -> str:
        """A token from the challenge's realm for its scope (kept per realm, service and scope)."""
        key = (challenge.get("realm", ""), challenge.get("service", ""), challenge.get("scope", ""))
        if key not in self._tokens:
            params = {name: value for name, value in (("service", key[1]), ("scope", key[2])) if value}
            realm = urlsplit(key[0])
            url = realm._replace(netloc=realm.netloc.replace(realm.hostname, self.realm_hosts[realm.hostname], 1)) \
                .geturl() if realm.hostname in self.realm_hosts else key[0]
            try:
                response = self.session.get(url, params=params, timeout=self.timeout, verify=self.verify)
            except requests.exceptions.RequestException as exc:
                raise RegistryError(f"cannot get a token for {what} from {key[0]}: {_reason(exc)}") from None
            if response.status_code == 401:
                raise RegistryError(self._refused(what), status=401)
            if response.status_code >= 400:
                raise RegistryError(f"the token service {key[0]} answered {response.status_code} for {what}",
                                    status=response.status_code)
            body = response.json()
            self._tokens[key] = body.get("token") or body.get("access_token") or ""
        return self._tokens[key]

    def _refused(self, what: str) -> str:
        if isinstance(self.session.auth, tuple):
            return (f"the registry at {self.url} refused user {self.session.auth[0]!r} (401) for {what}: wrong "
                    "password, or no right to it?")
        return f"the registry at {self.url} requires authentication (401) for {what}; give --username and --password"

    def _get(self, path_or_url: str, what: str, method: str = "GET", **kwargs) -> requests.Response:
        url = urljoin(self.url + "/", path_or_url.lstrip("/")) if not path_or_url.startswith("http") \
            else path_or_url
        try:
            response = self.session.request(method, url, timeout=self.timeout, verify=self.verify, **kwargs)
            challenge = bearer_challenge(response.headers.get("WWW-Authenticate", "")) \
                if response.status_code == 401 else None
            if challenge and challenge.get("realm"):
                token = self._token(challenge, what)
                response = self.session.request(method, url, timeout=self.timeout, verify=self.verify,
                                                auth=_Bearer(token), **kwargs)
        except requests.exceptions.SSLError as exc:
            raise RegistryError(f"TLS failure talking to {self.url}: {_reason(exc)} "
                                "(plain-HTTP registry? use http://; self-signed? pass its CA)") from None
        except requests.exceptions.ConnectionError as exc:
            raise RegistryError(f"cannot reach the registry at {self.url}: {_reason(exc)}") from None
        except requests.exceptions.Timeout:
            raise RegistryError(f"the registry at {self.url} did not answer within {self.timeout} s") from None
        if response.status_code == 401:
            raise RegistryError(self._refused(what), status=401)
        if response.status_code == 400 and "HTTP request to an HTTPS server" in response.text:
            raise RegistryError(f"the registry at {self.url} serves HTTPS: give --tls (and --ca), or set "
                                "registry_tls in the inventory's data (group_data/all.py), not only with "
                                "`pyinfra --data`", status=400)
        if response.status_code == 404:
            raise RegistryError(f"{what}: not found in the registry at {self.url} (404)", status=404)
        if response.status_code >= 400:
            raise RegistryError(f"{what}: the registry at {self.url} answered {response.status_code} "
                                f"{response.text.strip()[:200]}", status=response.status_code)
        return response

    def _paginate(self, path: str, key: str, what: str, page_size: int) -> Iterator[str]:
        next_url: str | None = f"{path}?n={page_size}"
        while next_url:
            response = self._get(next_url, what)
            yield from response.json().get(key) or []
            link = response.links.get("next", {}).get("url")
            next_url = urljoin(response.url, link) if link else None

    def catalog(self, page_size: int = 100) -> list[str]:
        return list(self._paginate("/v2/_catalog", "repositories", "the catalog", page_size))

    def tags(self, repository: str, page_size: int = 100) -> list[str]:
        return list(self._paginate(f"/v2/{repository}/tags/list", "tags",
                                   f"repository {repository!r}", page_size))

    def manifests(self) -> dict[tuple[str, str], str | None]:
        """{(repository, tag): manifest digest} for everything the registry serves: what a move,
        a backup or a restore of its storage must keep exactly."""
        return {(repository, tag): self.manifest_digest(repository, tag)
                for repository in self.catalog() for tag in self.tags(repository)}

    def manifest_digest(self, repository: str, reference: str) -> str | None:
        """Digest of repository:reference, or None when the registry does not have it."""
        try:
            response = self._get(f"/v2/{repository}/manifests/{reference}", f"{repository}:{reference}",
                                 method="HEAD", headers={"Accept": MANIFEST_TYPES})
        except RegistryError as exc:
            if exc.status == 404:
                return None
            raise
        return response.headers.get("Docker-Content-Digest")


def _reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Failed to establish a new connection: ", "SSLError(", "ConnectionRefusedError("):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text.strip(" ()'\"")[:200]
