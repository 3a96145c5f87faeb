"""The load balancers in front of several registry replicas (the `registry_lb` hosts): haproxy from the
distribution, its configuration rendered from the inventory's replicas, one backend named LB_BACKEND;
with registry_lb_vip, keepalived from the distribution moves that address between them.

Health checks (GET /v2/ every CHECK_MS) take a replica out of rotation after FALL failures and back
after RISE successes. A replica being replaced sets itself to drain on every load balancer's status
page first, and back to ready once it answers, then waits there until it is UP again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import reference
from .rendering import render

LB_BACKEND = "registry_replicas"
TOKEN_BACKEND = "token_services"  # registry_access: each replica's token service, on registry_token_port
CONFIG_PATH = "/etc/haproxy/haproxy.cfg"
# registry_tls: TLS ends at haproxy, with the registry's certificate and key in one file (0600), and
# starts again to the replicas, verified against the CA(s) the hosts trust.
TLS_DIR = "/etc/haproxy/regdeploy"
PEM_PATH = f"{TLS_DIR}/registry.pem"
CA_PATH = f"{TLS_DIR}/ca.crt"
TLS_FILES = {"lb_pem": PEM_PATH, "lb_ca": CA_PATH}  # the fact's label for each
KEEPALIVED_CONFIG_PATH = "/etc/keepalived/keepalived.conf"
# haproxy, and curl for the wait on its status page after a reload (and keepalived's check of it).
PACKAGES = ("haproxy", "curl")
# With registry_lb_vip.
VIP_PACKAGES = ("keepalived",)
# registry_lb_cache: the blob-descriptor cache the replicas share, on every load balancer. Nothing is
# kept on disk (a cache that restarts starts empty), at most CACHE_MEMORY, least recently used out.
CACHE_PACKAGES = ("redis-server",)
CACHE_PORT = 6379
CACHE_MEMORY = "256mb"
CACHE_CONFIG_PATH = "/etc/redis/redis.conf"
# Its password (derived from http.secret), included by redis.conf: root and redis only.
CACHE_AUTH_PATH = "/etc/redis/regdeploy-auth.conf"
# Empties this host's cache: keepalived runs it when the host takes registry_lb_vip or gives it up,
# `regdeploy gc` and `prune` after the collector deleted blobs.
CACHE_FLUSH_PATH = "/usr/local/sbin/regdeploy-flush-blob-cache"
CACHE_FILES = {"cache_conf": CACHE_CONFIG_PATH, "cache_auth": CACHE_AUTH_PATH, "cache_flush": CACHE_FLUSH_PATH}
# VRRP: an advertisement a second; a backup takes the address about 3.2 s after the last one it saw.
ADVERT_SECONDS = 1
CHECK_MS = 500
FALL = 2
RISE = 2
# How long a replica may take to start answering a short read (a HEAD, a manifest, a tag list), and
# a layer's GET, before haproxy sends it to another (a layer's also how long it may stall): a replica
# that died mid-request answers nothing at all.
SHORT_TIMEOUT = "5s"
READ_TIMEOUT = "15s"


def server_name(host_name: str) -> str:
    """haproxy's name for a replica: the inventory name, with what haproxy refuses as `_`."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", host_name)


def packages(settings) -> tuple[str, ...]:
    return PACKAGES + (VIP_PACKAGES if settings.registry_lb_vip else ()) + \
        (CACHE_PACKAGES if settings.blob_cache_address else ())


def services(settings) -> tuple[str, ...]:
    """The systemd units a load balancer runs, each active and enabled after a deploy."""
    return (("redis-server.service",) if settings.blob_cache_address else ()) + ("haproxy.service",) + \
        (("keepalived.service",) if settings.registry_lb_vip else ())


def fact_checks(settings) -> tuple:
    """What a load balancer's DockerHostState fact reads: its configuration files, whether each service
    runs and starts at boot, and (with registry_lb_vip) its IPv4 addresses, for keepalived's interface."""
    # The TLS files whatever the mode: without registry_tls, ones an earlier run wrote are removed.
    checks: list[tuple] = [("file", "haproxy_cfg", CONFIG_PATH), *(("file", label, path) for label, path in TLS_FILES.items())]
    if settings.blob_cache_address:
        checks += [("file", label, path) for label, path in CACHE_FILES.items()]
    if settings.registry_lb_vip:
        checks += [("file", "keepalived_conf", KEEPALIVED_CONFIG_PATH),
                   ("output", "addresses", ("ip", "-o", "-4", "addr", "show"))]
    for unit in services(settings):
        checks += [("running", unit, unit), ("enabled", unit, unit)]
    return tuple(checks)


def haproxy_config(settings) -> str:
    """haproxy.cfg for this inventory: every replica of `registry_servers`, at its SSH address."""
    replicas = [(server_name(name), address) for name, address in settings.replicas]
    tls = None
    if settings.registry_tls:
        # The replicas' certificate names registry_host; haproxy checks a name, not an address.
        host = settings.registry_host
        tls = {"verifyhost": "" if reference.ip_address(host) is not None else host}
    return render("haproxy.cfg.j2", port=settings.registry_port, backend=LB_BACKEND, replicas=replicas,
                  tls=tls, pem=PEM_PATH, ca=CA_PATH, stats_port=settings.registry_lb_stats_port,
                  check_ms=CHECK_MS, fall=FALL, rise=RISE, short_timeout=SHORT_TIMEOUT, read_timeout=READ_TIMEOUT,
                  token_port=settings.registry_token_port if settings.registry_access else 0,
                  token_backend=TOKEN_BACKEND, admins=[address for _, address in settings.replicas])


@dataclass(frozen=True)
class TlsFile:
    """A file of the load balancer's services: haproxy's certificate with its key or CA bundle, the
    cache's password or its flush script."""

    label: str
    path: str
    content: str
    mode: str
    secret: bool
    group: str = "root"


def tls_files(material) -> tuple[TlsFile, ...]:
    """`material`: security.tls_material's (None without registry_tls)."""
    if material is None:
        return ()
    pem = material.cert_pem.rstrip("\n") + "\n" + material.key_pem.rstrip("\n") + "\n"
    return (TlsFile("lb_pem", TLS_FILES["lb_pem"], pem, "600", True),
            TlsFile("lb_ca", TLS_FILES["lb_ca"], material.ca_pem, "644", False))


def cache_config() -> str:
    """redis.conf for the blob-descriptor cache (its password is in CACHE_AUTH_PATH)."""
    return render("redis.conf.j2", port=CACHE_PORT, memory=CACHE_MEMORY, auth=CACHE_AUTH_PATH)


def cache_cli(command: str) -> str:
    """A shell command running `redis-cli COMMAND` against this load balancer's cache as root, the
    password from its file (in the environment, never on a command line): for checks and benches."""
    return (f"REDISCLI_AUTH=$(sed -n 's/^requirepass //p' {CACHE_AUTH_PATH}) "
            f"redis-cli -h 127.0.0.1 -p {CACHE_PORT} {command}")


def cache_files(settings) -> tuple[TlsFile, ...]:
    """The cache's password file and the script that empties the cache (registry_lb_cache); () without.
    Raises CredentialError (the password derives from http.secret)."""
    from . import security

    password = security.cache_password(settings)
    if password is None:
        return ()
    return (TlsFile("cache_auth", CACHE_AUTH_PATH, f"requirepass {password}\n", "640", True, group="redis"),
            TlsFile("cache_flush", CACHE_FLUSH_PATH,
                    render("flush-blob-cache.sh.j2", auth=CACHE_AUTH_PATH, port=CACHE_PORT), "755", False))


class NoInterface(ValueError):
    """The load balancer holds none of the addresses keepalived would use."""


def interface_of(address_lines: list[str], address: str) -> str:
    """The interface holding `address`, from `ip -o -4 addr show`'s lines ("2: eth0@if9    inet
    172.29.57.13/24 brd ... scope global eth0 ...")."""
    for line in address_lines:
        words = line.split()
        if "inet" in words[:-1] and words[words.index("inet") + 1].partition("/")[0] == address:
            return words[1].rstrip(":").partition("@")[0]
    raise NoInterface(f"no interface holds {address}")


def keepalived_config(settings, address_lines: list[str]) -> str:
    """keepalived.conf for this load balancer: one VRRP instance holding registry_lb_vip while its own
    haproxy answers, unicast to the other load balancers. Every one starts as a backup and none takes
    the address back from another that holds it (nopreempt): a load balancer that returns costs no
    second move. Priorities follow the inventory's order, for the elections among backups."""
    names = [name for name, _ in settings.lbs]
    own = dict(settings.lbs)[settings.host_name]
    vip = settings.registry_lb_vip if "/" in settings.registry_lb_vip else f"{settings.registry_lb_vip}/32"
    return render("keepalived.conf.j2", router_id=server_name(settings.host_name), own=own,
                  flush=CACHE_FLUSH_PATH if settings.blob_cache_address else "",
                  interface=interface_of(address_lines, own), vrid=settings.registry_lb_vrid,
                  priority=200 - names.index(settings.host_name), advert=ADVERT_SECONDS,
                  peers=[address for name, address in settings.lbs if name != settings.host_name], vip=vip,
                  stats_port=settings.registry_lb_stats_port)


@dataclass(frozen=True)
class ServiceStep:
    """One service of a load balancer to (re)configure and start: `reasons` say why (empty: as wanted)."""

    service: str
    path: str
    content: str
    check: tuple[str, ...]  # () for redis, which has no check of its configuration
    check_passes: tuple[int, ...]  # the check's exit codes that mean the file is good
    wait_url: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class LbPlan:
    missing: tuple[str, ...]  # packages to install
    tls: tuple[TlsFile, ...]  # TLS files to write (registry_tls)
    stale: tuple[str, ...]  # TLS files an earlier run wrote that nothing uses now (the key among them)
    steps: tuple[ServiceStep, ...]  # redis's (registry_lb_cache), haproxy's, then keepalived's
    cache: tuple[TlsFile, ...] = ()  # the cache's files to write, before its step


def lb_plan(settings, state, material=None) -> LbPlan:
    """What a load balancer needs, from its DockerHostState and `material` (security.tls_material). A
    service whose file differs, that is stopped, or that does not start at boot gets its file written
    and is enabled and reloaded (or started); haproxy is reloaded too for a new certificate or CA.
    Raises NoInterface for a VIP no interface can carry."""
    from .host_state import file_matches

    missing = tuple(name for name in packages(settings) if not state.packages.get(name))
    stats = f"http://127.0.0.1:{settings.registry_lb_stats_port}/stats"
    cache = cache_files(settings)
    new_cache = tuple(f for f in cache if not file_matches(state.files.get(f.label), f.content, f.mode))
    wanted: list[tuple[str, str, str, str, tuple[str, ...], tuple[int, ...], str]] = []
    if cache:
        # redis 7.0 has no check of a file: ours is rendered whole, its unit says whether it started.
        wanted.append(("redis-server.service", "cache_conf", CACHE_CONFIG_PATH, cache_config(), (), (0,), ""))
    wanted.append(("haproxy.service", "haproxy_cfg", CONFIG_PATH, haproxy_config(settings),
                   ("haproxy", "-c", "-q", "-f"), (0,), stats))
    if settings.registry_lb_vip:
        # keepalived 2.2 (Debian 12) ends a check it passed with SIGTERM to itself (128 + 15); a refused
        # file exits 1 to 5.
        wanted.append(("keepalived.service", "keepalived_conf", KEEPALIVED_CONFIG_PATH,
                       keepalived_config(settings, state.lines.get("addresses", [])),
                       ("keepalived", "--config-test", "-f"), (0, 143), ""))
    tls = tls_files(material)
    new_tls = tuple(f for f in tls if not file_matches(state.files.get(f.label), f.content, f.mode))
    steps = []
    for unit, label, path, content, check, check_passes, wait_url in wanted:
        service = unit.removesuffix(".service")
        reasons: tuple[str, ...]
        if missing:
            reasons = (f"{service} is being installed",)
        else:
            reasons = tuple(reason for reason, drifted in (
                (f"{path} differs from the inventory's", not file_matches(state.files.get(label), content, "644")),
                (f"{service} is not running", unit not in state.running),
                (f"{service} does not start at boot", unit not in state.enabled_units),
                (f"{', '.join(f.path for f in new_tls)} changed", service == "haproxy" and bool(new_tls)),
                (f"{CACHE_AUTH_PATH} changed", service == "redis-server" and any(f.label == "cache_auth" for f in new_cache)),
            ) if drifted)
        steps.append(ServiceStep(service, path, content, check, check_passes, wait_url, reasons))
    wanted_tls = {f.label for f in tls}
    stale = tuple(path for label, path in TLS_FILES.items() if label in state.files and label not in wanted_tls)
    return LbPlan(missing, new_tls, stale, tuple(steps), new_cache)
