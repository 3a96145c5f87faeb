"""The registry's files on its server (config.yml, TLS certificate and key, htpasswd, regdeploy's
API credentials) and how regdeploy's scripts there reach its API, in each mode: plain HTTP, TLS,
TLS with authentication.

The deploy, the `regdeploy` CLI (backup, restore) and the testinfra suite all take these from here,
so they agree on every path and on how a script on the server talks to the registry.
"""

from __future__ import annotations

import json
import posixpath
import shlex
from dataclasses import dataclass
from pathlib import Path

from . import access, load_balancer, managed, runtime_config, security
from .deploy_lock import LOCK_PATH
from .registry_plan import CONFIG_TARGET, CONTAINER_PORT, DEBUG_PORT, STORAGE_TARGET
from .rendering import render
from .settings import cache_settings

CERTS_TARGET = "/certs"  # where the container sees the TLS directory (as Docker's documentation has it)
AUTH_TARGET = "/auth"  # and the htpasswd directory: a directory, so a replaced file is seen


def tls_dir(settings) -> str:
    """Server certificate and key on the server (0700; the key 0600)."""
    return posixpath.join(settings.registry_config_dir, "tls")


def auth_dir(settings) -> str:
    return posixpath.join(settings.registry_config_dir, "auth")


def htpasswd_path(settings) -> str:
    return posixpath.join(auth_dir(settings), "htpasswd")


def previous_htpasswd_path(settings) -> str:
    """With registry_access, during a password rotation: the old hashes, which the token service also
    accepts until every host has logged in with the new password (then the deploy removes it)."""
    return posixpath.join(auth_dir(settings), "htpasswd.previous")


def api_credentials_path(settings) -> str:
    """The curl config (0600) with which regdeploy's scripts on the server authenticate to the registry:
    the `registry_login_user`'s password on the server, as `docker login` keeps it (root-only)."""
    return posixpath.join(settings.registry_config_dir, "api-credentials")


def api_stamp_path(settings) -> str:
    return api_credentials_path(settings) + ".regdeploy-stamp"


# Root's Docker client configuration, where `docker login` keeps credentials, and regdeploy's stamp
# beside it (the user and a bcrypt hash of the password it logged in with).
DOCKER_CONFIG_DIR = "/root/.docker"
DOCKER_CONFIG = f"{DOCKER_CONFIG_DIR}/config.json"
LOGIN_STAMP = f"{DOCKER_CONFIG_DIR}/regdeploy-login"


# Podman's credentials for root, where they survive a reboot: the auth file Podman reads after
# ${XDG_RUNTIME_DIR}/containers/auth.json (a tmpfs, /run/containers/0 for root) and before Docker's
# config.json (containers-auth.json(5)); regdeploy's stamp beside it, as for Docker.
PODMAN_AUTH_DIR = "/root/.config/containers"
PODMAN_AUTH = f"{PODMAN_AUTH_DIR}/auth.json"
PODMAN_LOGIN_STAMP = f"{PODMAN_AUTH_DIR}/regdeploy-login"
# A local user's (registry_login_local_users) Docker login: in their home, `~/.docker/config.json`
# with regdeploy's stamp beside it (both theirs).
LOCAL_LOGIN_STAMP = ".docker/regdeploy-login"


def local_login_label(user: str) -> str:
    return f"login.{user}"


# containerd's credentials: CRI's auth in config.toml (runtime_config); regdeploy's stamp beside it.
CONTAINERD_LOGIN_STAMP = "/etc/containerd/regdeploy-login"


def client_ca_path(settings) -> str:
    """Where Docker looks for the CA of one registry, on every host: read at each connection."""
    return f"/etc/docker/certs.d/{settings.registry_address}/ca.crt"


def tls_cert_path(settings) -> str:
    return posixpath.join(tls_dir(settings), "registry.crt")


def tls_key_path(settings) -> str:
    return posixpath.join(tls_dir(settings), "registry.key")


def fact_checks(settings) -> tuple:
    """What the host's DockerHostState fact reads about these files (its `checks` argument): every
    host's CA and `docker login`, containerd's and Podman's files, and on the server its TLS files, htpasswd and API credentials."""
    # Which regdeploy deployed the host last (every host), the load balancer's config; a host that is
    # only the load balancer has nothing else to check.
    from . import retire

    lb = [("lines", "managed_by", managed.PATH), *retire.fact_checks(settings)] + (
        list(load_balancer.fact_checks(settings)) if settings.is_lb else []) + (
        # registry_lb_mode=ipvs: the address on the replicas' loopback (found on the others, to remove).
        list(load_balancer.replica_fact_checks(settings)) if settings.lbs and not settings.is_lb else [])
    if not settings.uses_registry:
        return tuple(lb)
    address = settings.registry_address
    hosts_dir = runtime_config.containerd_hosts_dir(address)
    checks = [*lb, ("file", "ca", client_ca_path(settings)),
              ("stamp", "login", LOGIN_STAMP, DOCKER_CONFIG, f'"{address}"'),
              ("stamp", "podman_login", PODMAN_LOGIN_STAMP, PODMAN_AUTH, f'"{address}"'),
              # containerd and Podman, whether or not the host has them (a test of a path costs nothing).
              ("file", "containerd_hosts", f"{hosts_dir}/hosts.toml"), ("file", "containerd_ca", f"{hosts_dir}/ca.crt"),
              # Its secrets masked: CRI's credentials (runtime_config).
              ("masked", "containerd_config", runtime_config.CONTAINERD_CONFIG),
              ("stamp", "containerd_login", CONTAINERD_LOGIN_STAMP, runtime_config.CONTAINERD_CONFIG, f'"{address}"'),
              ("file", "podman_conf", runtime_config.PODMAN_DROPIN),
              ("file", "podman_ca", runtime_config.podman_ca_path(address))]
    # Local users' Docker logins: their homes come from the passwd database on the host.
    checks += [("home_stamp", local_login_label(user), user, f'"{address}"') for user in settings.registry_login_local_users]
    # The cache seen as a registry (a dataclasses.replace of every field): only where it is needed.
    cache = cache_settings(settings) if settings.proxy_mirror or settings.is_server else None
    if cache and settings.proxy_mirror:
        checks.append(("file", "proxy_ca", client_ca_path(cache)))
    if cache and settings.is_server:
        checks += [("file", "cache_config", cache.registry_config_path),
                   ("file", "tls_cert", tls_cert_path(settings)), ("file", "tls_key", tls_key_path(settings)),
                   ("lines", "htpasswd", htpasswd_path(settings)),
                   ("file", "htpasswd_previous", previous_htpasswd_path(settings)),
                   ("stamp", "api", api_stamp_path(settings), api_credentials_path(settings), ""),
                   *(("file", label, path) for label, path in GC_FILES.items()),
                   *(("file", label, path) for label, path in token_files(settings).items()),
                   ("running", "token_service", f"{TOKEN_UNIT}.service")]
    return tuple(checks)


# registry_gc_schedule: the collection script and its systemd units on the server. `gc_enabled` is
# the timer's link in timers.target.wants (present once it is enabled, hashing like the unit).
GC_SCRIPT = "/etc/regdeploy/gc.sh"
GC_UNIT = "regdeploy-gc"
# With registry_retention, the timer prunes first: the rules (parsed, as JSON) and the planner
# (regdeploy/retention.py, and token_service.py for the repository patterns) run by Debian's python3.
PRUNE_DIR = "/usr/local/lib/regdeploy-prune"
GC_FILES = {"gc_script": GC_SCRIPT, "gc_service": f"/etc/systemd/system/{GC_UNIT}.service",
            "gc_timer": f"/etc/systemd/system/{GC_UNIT}.timer",
            "gc_enabled": f"/etc/systemd/system/timers.target.wants/{GC_UNIT}.timer",
            "gc_rules": "/etc/regdeploy/retention.json", "gc_planner": f"{PRUNE_DIR}/retention.py",
            "gc_planner_lib": f"{PRUNE_DIR}/token_service.py"}
# Who holds the deploy lock while the timer's collection runs (fixed: the script must not change
# from one deploy to the next).
GC_TIMER_HOLDER = f"regdeploy gc (systemd {GC_UNIT}.timer)"


# A server script's exit status when it refuses for safety (another run holds the host's deploy lock,
# data in the way): the regdeploy command exits with its own Exit.REFUSED then.
REFUSED = 6

# How long a hold on new connections (templates/parts/registry-hold.sh.j2) lasts at most if the script
# that set it never removes it: past the restart's own bounds (docker restart -t 10, then 60 s to
# answer), so it never lapses mid-restart.
HOLD_SECONDS = 120


def server_variables(settings, holder: str) -> dict:
    """What every script run on a registry server by the regdeploy command is rendered with: its
    container, files, port, deploy lock (`holder` says who takes it) and API."""
    return dict(name=settings.registry_container_name, config_path=settings.registry_config_path,
                data_dir=settings.registry_data_dir, port=settings.registry_port, lock=LOCK_PATH,
                lock_timeout=settings.deploy_lock_timeout, holder=holder, api=loopback_api(settings),
                config_target=CONFIG_TARGET, refused=REFUSED)


def server_script(settings, template: str, holder: str, *, dry_run: bool = False, **extra) -> str:
    """A templates/ script run on the registry server against its registry: backup, restore, gc."""
    return render(template, **server_variables(settings, holder),
                  readonly_config=registry_config(settings, readonly=True), dry_run=dry_run,
                  hold_seconds=HOLD_SECONDS, **extra)


# registry_access: regdeploy's token service on each registry server (regdeploy/token_service.py,
# run by Debian's python3 with PyJWT and bcrypt, supervised by systemd).
TOKEN_UNIT = "regdeploy-token"
TOKEN_SCRIPT = "/usr/local/lib/regdeploy/token_service.py"
TOKEN_UNIT_PATH = f"/etc/systemd/system/{TOKEN_UNIT}.service"
TOKEN_ENABLED = f"/etc/systemd/system/multi-user.target.wants/{TOKEN_UNIT}.service"


def token_dir(settings) -> str:
    """The token service's config.json and signing key (0700; both 0600)."""
    return posixpath.join(settings.registry_config_dir, "token")


def token_config_path(settings) -> str:
    return posixpath.join(token_dir(settings), "config.json")


def token_key_path(settings) -> str:
    return posixpath.join(token_dir(settings), "signing.key")


def token_cert_path(settings) -> str:
    """The signing certificate, in the directory the registry container sees (its rootcertbundle)."""
    return posixpath.join(auth_dir(settings), TOKEN_CERT_NAME)


TOKEN_CERT_NAME = "token-signing.crt"


def token_files(settings) -> dict[str, str]:
    """{fact label: path} of the token service's files on a server."""
    return {"token_script": TOKEN_SCRIPT, "token_unit": TOKEN_UNIT_PATH, "token_enabled": TOKEN_ENABLED,
            "token_config": token_config_path(settings), "token_key": token_key_path(settings),
            "token_cert": token_cert_path(settings)}


def token_service_paths(settings) -> list[str]:
    """What removing the token service removes: its unit, its script's directory, its config and key,
    and the signing certificate the registry no longer reads."""
    return [TOKEN_UNIT_PATH, posixpath.dirname(TOKEN_SCRIPT), token_dir(settings), token_cert_path(settings)]


def token_realm(settings) -> str:
    """Where clients get tokens: the token service on registry_host (the server, or the load balancer)."""
    return f"https://{settings.registry_host}:{settings.registry_token_port}/token"


@dataclass(frozen=True)
class TokenAuth:
    realm: str
    service: str
    issuer: str
    cert_name: str = TOKEN_CERT_NAME


def token_auth(settings) -> TokenAuth | None:
    """The registry's `auth.token` section; None without registry_access."""
    if not settings.registry_access:
        return None
    return TokenAuth(token_realm(settings), access.SERVICE, access.ISSUER)


def token_service_config(settings) -> str:
    """The token service's config.json: the rules, and where its files are on the server."""
    config = access.token_config(access.parse_rules(settings.registry_access),
                                 listen=f"0.0.0.0:{settings.registry_token_port}", htpasswd=htpasswd_path(settings),
                                 previous_htpasswd=previous_htpasswd_path(settings),
                                 signing_key=token_key_path(settings), signing_cert=token_cert_path(settings),
                                 tls_cert=tls_cert_path(settings), tls_key=tls_key_path(settings))
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def token_service_script() -> str:
    return (Path(__file__).parent / "token_service.py").read_text()


def token_unit(settings, inputs: str) -> str:
    """The token service's systemd unit. `inputs`: a hash of what the service reads only at its start
    (script, signing key): when one changes, so does the unit, and the deploy restarts it. config.json,
    htpasswd and the TLS certificate and key are re-read by the service itself when they change."""
    return render("regdeploy-token.service.j2", script=TOKEN_SCRIPT, inputs=inputs,
                  config_path=token_config_path(settings))


# Behind load balancers: how long a replica being replaced waits for the requests it serves to end, once
# they send it no new ones, and how long its registry then finishes what is still in flight on stop.
DRAIN_SECONDS = 20


def registry_config(settings, readonly: bool = False) -> str:
    """config.yml for the registry container (read-only: for `regdeploy backup`'s copy window), or
    for the pull-through cache (settings.cache_settings) its cache.yml, upstream credentials included."""
    return render("registry-config.yml.j2", data_dir=settings.registry_data_dir, readonly=readonly,
                  allow_delete=settings.registry_allow_delete, tls=settings.registry_tls,
                  auth=settings.registry_auth, tls_dir=tls_dir(settings), auth_dir=auth_dir(settings),
                  certs_target=CERTS_TARGET, auth_target=AUTH_TARGET, debug_port=DEBUG_PORT,
                  storage_target=STORAGE_TARGET, container_port=CONTAINER_PORT,
                  proxy=proxy_config(settings), s3=s3_config(settings), http_secret=security.http_secret(settings),
                  token=token_auth(settings), drain_seconds=DRAIN_SECONDS, cache=cache_config(settings),
                  cache_timeout=CACHE_TIMEOUT)


@dataclass(frozen=True)
class CacheConfig:
    address: str  # host:port
    password: str


# How long a replica waits for the shared cache before going to the bucket instead: a load balancer's
# redis is one hop away, and one that died must not hold a pull up.
CACHE_TIMEOUT = "200ms"


def cache_config(settings) -> CacheConfig | None:
    """The `redis` section and `storage.cache` of the replicas (registry_lb_cache); None without."""
    password = security.cache_password(settings)
    return CacheConfig(settings.blob_cache_address, password) if password else None


@dataclass(frozen=True)
class S3Config:
    endpoint: str
    region: str
    bucket: str
    access_key: str
    secret_key: str

    @property
    def secure(self) -> bool:
        return not self.endpoint.startswith("http://")


def s3_config(settings) -> S3Config | None:
    """The `storage.s3` section (registry_storage=s3); None on filesystem storage."""
    if settings.registry_storage != "s3":
        return None
    secret = security.s3_secret(settings)
    assert secret is not None  # s3 storage: a secret or a CredentialError
    return S3Config(settings.registry_s3_endpoint, settings.registry_s3_region, settings.registry_s3_bucket,
                    settings.registry_s3_access_key, secret)


def bucket_url(settings) -> str:
    """The bucket's URL, path style (`<endpoint>/<bucket>`; AWS: its regional endpoint)."""
    endpoint = settings.registry_s3_endpoint or f"https://s3.{settings.registry_s3_region}.amazonaws.com"
    return f"{endpoint}/{settings.registry_s3_bucket}"


def holds_secrets(settings) -> bool:
    """Whether the registry's config file holds a secret (the upstream's password, the S3 key, the
    shared http.secret): then it is root's only (0600), and neither read back nor diffed."""
    return bool(settings.serves_cache and security.proxy_credentials(settings)) or \
        settings.registry_storage == "s3" or settings.several_replicas


@dataclass(frozen=True)
class ProxyConfig:
    remote_url: str
    username: str
    password: str


def proxy_config(settings) -> ProxyConfig | None:
    """The cache's `proxy:` section; None for the registry itself."""
    if not settings.serves_cache:
        return None
    user, password = security.proxy_credentials(settings) or ("", "")
    return ProxyConfig(settings.registry_proxy_remote_url, user, password)


def debug_binding(settings) -> str:
    """Where `docker run -p` publishes the debug endpoint: registry_metrics_port on every address when
    set, else an ephemeral port on the server's loopback (scripts find it with `docker port`)."""
    return str(settings.registry_metrics_port) if settings.registry_metrics_port else "127.0.0.1:"


def extra_mounts(settings) -> list[tuple[str, str]]:
    """(host directory, container directory) mounted read-only besides storage and config.yml."""
    mounts = []
    if settings.registry_tls:
        mounts.append((tls_dir(settings), CERTS_TARGET))
    if settings.registry_auth:
        mounts.append((auth_dir(settings), AUTH_TARGET))
    return mounts


@dataclass(frozen=True)
class LoopbackApi:
    """How a script on the server reaches the registry: `base` is the URL clients use (the name the
    certificate covers), `connect` the host:port curl rewrites to loopback (`--connect-to`), and
    `options` curl's other arguments (CA, credentials), already quoted for the shell. With
    registry_access the registry takes tokens, not passwords: `token` is the token service's URL,
    `token_connect` its host:port rewritten to loopback, and `token_options` the CA and credentials
    it is asked with (then `options` holds no credentials)."""

    base: str
    connect: str
    options: str
    token: str = ""
    token_connect: str = ""  # curl's --connect-to HOST:PORT:127.0.0.1:PORT for the token service
    token_options: str = ""
    token_service: str = ""


def loopback_api(settings) -> LoopbackApi:
    ca = ["--cacert", client_ca_path(settings)] if settings.registry_tls else []
    credentials = ["--config", api_credentials_path(settings)] if settings.registry_auth else []
    scheme = "https" if settings.registry_tls else "http"

    def quoted(options: list[str]) -> str:
        return " ".join(shlex.quote(o) for o in options)

    base = f"{scheme}://{settings.registry_address}"
    if settings.registry_access:
        return LoopbackApi(base=base, connect=settings.registry_address, options=quoted(ca),
                           token=token_realm(settings), token_service=access.SERVICE,
                           token_connect=f"{settings.registry_host}:{settings.registry_token_port}:127.0.0.1:"
                                         f"{settings.registry_token_port}", token_options=quoted(ca + credentials))
    return LoopbackApi(base=base, connect=settings.registry_address, options=quoted(ca + credentials))
