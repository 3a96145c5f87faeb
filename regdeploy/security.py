"""The secure modes' material on the controller, made or read once per process for every host of a
deploy (and for the CLI): the TLS certificate, key and CA (pki), and the registry accounts'
passwords (credentials)."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from . import credentials, pki

_tls: dict[tuple, pki.TlsMaterial] = {}
_passwords: dict[tuple, dict[str, str]] = {}
# What generating the TLS material did in this process (a new CA, a re-issued certificate, and why):
# the deploy says it on the registry server, once.
made: list[str] = []


def tls_material(settings) -> pki.TlsMaterial | None:
    """None unless registry_tls. Raises pki.TlsError for unusable files of the operator's."""
    if not settings.registry_tls:
        return None
    given = (settings.registry_tls_cert, settings.registry_tls_key, settings.registry_tls_ca)
    key = (settings.registry_tls_dir, settings.tls_names, given)
    if key not in _tls:
        if any(given):
            _tls[key] = pki.given_material(*given, registry_host=settings.registry_host)
        else:
            material, done = pki.generated_material(Path(settings.registry_tls_dir), list(settings.tls_names))
            made.extend(done)
            _tls[key] = material
    return _tls[key]


_signing: dict[str, pki.SigningMaterial] = {}


def signing_material(settings) -> pki.SigningMaterial | None:
    """The token service's signing key and certificate; None without registry_access."""
    if not settings.registry_access:
        return None
    if settings.registry_tls_dir not in _signing:
        material, done = pki.token_signing_material(Path(settings.registry_tls_dir))
        made.extend(done)
        _signing[settings.registry_tls_dir] = material
    return _signing[settings.registry_tls_dir]


def ca_path(settings) -> str | None:
    """The CA file on the controller (what the CLI verifies the registry with); None without TLS."""
    if not settings.registry_tls:
        return None
    if settings.registry_tls_ca:
        return settings.registry_tls_ca
    # Every CA the hosts trust (a rotation under way: both), once a deploy has written it.
    trusted = Path(settings.registry_tls_dir) / pki.TRUSTED
    return str(trusted if trusted.is_file() else Path(settings.registry_tls_dir) / pki.CA_CERT)


def passwords(settings) -> dict[str, str]:
    """{user: password} for registry_users ({} unless registry_auth). Raises CredentialError."""
    if not settings.registry_auth:
        return {}
    key = (settings.registry_users, settings.registry_password_file)
    if key not in _passwords:
        _passwords[key] = credentials.load_passwords(settings.registry_users, settings.registry_password_file)
    return _passwords[key]


def proxy_credentials(settings) -> tuple[str, str] | None:
    """(user, password) the pull-through cache gives its upstream; None without a cache or an account.
    Raises CredentialError."""
    if not (settings.registry_proxy_remote_url and settings.registry_proxy_username):
        return None
    key = ("proxy", settings.registry_proxy_username, settings.registry_proxy_password_file)
    if key not in _passwords:
        _passwords[key] = {settings.registry_proxy_username: credentials.load_proxy_password(
            settings.registry_proxy_username, settings.registry_proxy_password_file)}
    return settings.registry_proxy_username, _passwords[key][settings.registry_proxy_username]


def s3_secret(settings) -> str | None:
    """The S3 secret key (registry_storage=s3); None on filesystem storage. Raises CredentialError."""
    if settings.registry_storage != "s3":
        return None
    return _secret(credentials.S3_ENV, settings.registry_s3_secret_file, "registry_s3_secret_file",
                   f"S3 secret key for the access key {settings.registry_s3_access_key!r}")


def http_secret(settings) -> str | None:
    """The http.secret every replica shares; None with one server (the registry makes its own).
    Raises CredentialError."""
    if len(settings.replicas) < 2:
        return None
    return _secret(credentials.HTTP_SECRET_ENV, settings.registry_http_secret_file, "registry_http_secret_file",
                   "http.secret for the registry replicas (`openssl rand -hex 32`)")


def cache_password(settings) -> str | None:
    """The password of the blob-descriptor cache the replicas share (registry_lb_cache), derived from
    http.secret: nothing more to keep, and it changes with it. None without that cache. Raises
    CredentialError."""
    if not settings.blob_cache_address:
        return None
    secret = http_secret(settings)
    assert secret is not None  # several replicas
    return hmac.new(secret.encode(), b"regdeploy blob-descriptor cache", hashlib.sha256).hexdigest()


def _secret(env: str, path: str, variable: str, what: str) -> str:
    key = ("secret", env, path)
    if key not in _passwords:
        _passwords[key] = {"": credentials.load_secret(env, path, variable, what)}
    return _passwords[key][""]


def login(settings) -> tuple[str, str] | None:
    """(user, password) regdeploy and Docker use on the hosts; None unless registry_auth."""
    if not settings.registry_auth:
        return None
    return settings.login_user, passwords(settings)[settings.login_user]
