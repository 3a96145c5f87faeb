"""The load balancers in front of several registry replicas (the `registry_lb` hosts): haproxy from the
distribution, its configuration rendered from the inventory's replicas, one backend named LB_BACKEND;
with registry_lb_vip, keepalived from the distribution moves that address between them.

With registry_lb_mode=ipvs there is no haproxy: keepalived programs the kernel's IPVS, which forwards
each connection to registry_lb_vip to a replica by its MAC address (direct routing); the replica holds
that address on its loopback (without answering ARP for it) and answers the client itself. keepalived's
sync daemon copies every connection to the other load balancers, so the one that takes the address
forwards the open connections on to the same replicas. A replica being replaced refuses the load
balancers' checks: they give it weight 0 (no new connection), its open ones carry on.

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
# registry_lb_mode=ipvs: keepalived, its checks of the replicas (curl), ipvsadm to read the table.
IPVS_PACKAGES = ("keepalived", "ipvsadm", "curl")
# keepalived's check of a replica (MISC_CHECK, misc_dynamic): weight 1 while it answers GET /v2/, 0
# while it refuses connections from the load balancers (drained: regdeploy's REJECT on the replica;
# its open connections carry on), removed when it answers nothing (its connections then end at their
# next packet: expire_nodest_conn, so a client learns at once and Docker retries on a live replica).
REPLICA_CHECK_PATH = "/usr/local/libexec/regdeploy-replica-check"
IPVS_SYSCTL_PATH = "/etc/sysctl.d/60-regdeploy-ipvs.conf"
IPVS_MODULES_PATH = "/etc/modules-load.d/regdeploy-ipvs.conf"
IPVS_FILES = {"ipvs_check": REPLICA_CHECK_PATH, "ipvs_sysctl": IPVS_SYSCTL_PATH, "ipvs_modules": IPVS_MODULES_PATH}
# sloppy_tcp: a load balancer that takes the address forwards a packet of a connection the holder had
# not synced yet too (the kernel's sync daemon sends connections in batches, up to 2-3 s late), not
# only a SYN; lb_algo sh with sh-port (keepalived.conf) sends it to the replica the holder chose.
IPVS_SYSCTLS = (("net.ipv4.vs.expire_nodest_conn", "1"), ("net.ipv4.vs.sloppy_tcp", "1"))
# Each replica with ipvs: registry_lb_vip on its loopback, set by a unit of its own at boot, after the
# ARP settings that keep the replica from answering for that address (only the holder answers).
REPLICA_SYSCTL_PATH = "/etc/sysctl.d/60-regdeploy-lb-address.conf"
REPLICA_UNIT = "regdeploy-lb-address.service"
REPLICA_UNIT_PATH = f"/etc/systemd/system/{REPLICA_UNIT}"
REPLICA_SYSCTLS = (("net.ipv4.conf.all.arp_ignore", "1"), ("net.ipv4.conf.all.arp_announce", "2"))
# A check every IPVS_CHECK_SECONDS, two failures in a row remove a replica; a drained replica waits
# DRAIN_NOTICE_SECONDS for every load balancer to have seen its refusal (and its answers, when back).
IPVS_CHECK_SECONDS = 1
DRAIN_NOTICE_SECONDS = 4
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
    cache = CACHE_PACKAGES if settings.blob_cache_address else ()
    if settings.ipvs:
        return IPVS_PACKAGES + cache
    return PACKAGES + (VIP_PACKAGES if settings.registry_lb_vip else ()) + cache


def services(settings) -> tuple[str, ...]:
    """The systemd units a load balancer runs, each active and enabled after a deploy."""
    return (("redis-server.service",) if settings.blob_cache_address else ()) + \
        (() if settings.ipvs else ("haproxy.service",)) + \
        (("keepalived.service",) if settings.registry_lb_vip else ())


def fact_checks(settings) -> tuple:
    """What a load balancer's DockerHostState fact reads: its configuration files, whether each service
    runs and starts at boot, and (with registry_lb_vip) its IPv4 addresses, for keepalived's interface."""
    # The TLS files whatever the mode: without registry_tls, ones an earlier run wrote are removed.
    checks: list[tuple] = [] if settings.ipvs else [("file", "haproxy_cfg", CONFIG_PATH)]
    checks += [("file", label, path) for label, path in TLS_FILES.items()]
    if settings.ipvs:  # haproxy an earlier run started is stopped
        checks += [("running", "haproxy.service", "haproxy.service"), ("enabled", "haproxy.service", "haproxy.service")]
        checks += [("file", label, path) for label, path in IPVS_FILES.items()]
        checks += [("output", "ipvs_sysctls", ("sysctl", "-n", *(name for name, _ in IPVS_SYSCTLS)))]
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
    second move. Priorities follow the inventory's order, for the elections among backups. With ipvs:
    no haproxy; the virtual servers (the registry's port, and the token service's with
    registry_access), each replica checked by REPLICA_CHECK_PATH, and the sync daemon."""
    names = [name for name, _ in settings.lbs]
    own = dict(settings.lbs)[settings.host_name]
    vip = settings.registry_lb_vip if "/" in settings.registry_lb_vip else f"{settings.registry_lb_vip}/32"
    interface = interface_of(address_lines, own)
    ipvs = None
    if settings.ipvs:
        ipvs = {"ports": ipvs_ports(settings), "check": REPLICA_CHECK_PATH, "check_seconds": IPVS_CHECK_SECONDS,
                # With TLS a connection: a handshake a second per replica and port is real work for a
                # load balancer (the lab's emulated CPUs could not keep up and took live replicas out).
                "scheme": "tcp" if settings.registry_tls else "http",
                "replicas": [address for _, address in settings.replicas]}
    return render("keepalived.conf.j2", router_id=server_name(settings.host_name), own=own,
                  flush=CACHE_FLUSH_PATH if settings.blob_cache_address else "",
                  interface=interface, vrid=settings.registry_lb_vrid,
                  priority=200 - names.index(settings.host_name), advert=ADVERT_SECONDS,
                  peers=[address for name, address in settings.lbs if name != settings.host_name], vip=vip,
                  vip_address=settings.vip_address, stats_port=settings.registry_lb_stats_port, ipvs=ipvs)


def ipvs_files(settings) -> tuple[TlsFile, ...]:
    """With ipvs: keepalived's check of a replica, the kernel setting it relies on and the module that
    carries it, loaded at boot; () without."""
    if not settings.ipvs:
        return ()
    return (TlsFile("ipvs_check", REPLICA_CHECK_PATH, render("replica-check.sh.j2"), "755", False),
            TlsFile("ipvs_sysctl", IPVS_SYSCTL_PATH, sysctl_file(IPVS_SYSCTLS, "the load balancer's IPVS"), "644", False),
            TlsFile("ipvs_modules", IPVS_MODULES_PATH, "# Written by regdeploy (registry_lb_mode=ipvs).\nip_vs\n",
                    "644", False))


def sysctl_file(values: tuple[tuple[str, str], ...], what: str) -> str:
    return f"# Written by regdeploy: {what}.\n" + "".join(f"{name} = {value}\n" for name, value in values)


@dataclass(frozen=True)
class ReplicaAddress:
    """What a replica needs for ipvs (registry_lb_mode): `files` to write, then `apply` (ARP settings,
    then the address, the unit enabled) for `reasons`; `remove`: addresses an earlier run put on its
    loopback that it must no longer hold; `retire`: without ipvs, the unit and its files go too."""

    files: tuple[TlsFile, ...] = ()
    apply: str = ""
    reasons: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    retire: bool = False


UNIT_ADDRESS_LINE = "ExecStart=/sbin/ip address replace "


def replica_unit(vip_address: str) -> str:
    return render("lb-address.service.j2", sysctl=REPLICA_SYSCTL_PATH, address=f"{vip_address}/32",
                  address_line=UNIT_ADDRESS_LINE)


def replica_address_plan(settings, state) -> ReplicaAddress:
    """A replica with ipvs holds registry_lb_vip on its loopback, after ARP settings that keep it from
    answering for it; any other host (a client, a former replica), and any host without ipvs, holds none
    that regdeploy put there. `state`: its DockerHostState (replica_fact_checks)."""
    from .host_state import file_matches

    # The addresses regdeploy's unit puts there, and those the loopback holds ("1: lo inet A/32 ...").
    held = [line.removeprefix(UNIT_ADDRESS_LINE).split("/")[0] for line in state.lines.get("lb_address_unit_lines", [])
            if line.startswith(UNIT_ADDRESS_LINE)]
    loopback = [line.split()[3].partition("/")[0] for line in state.lines.get("loopback", []) if len(line.split()) > 3]
    if not (settings.ipvs and settings.is_server):  # a client holding it would talk to itself
        return ReplicaAddress(remove=tuple(a for a in held if a in loopback),
                              retire="lb_address_unit" in state.files or "lb_address_sysctl" in state.files)
    files = (TlsFile("lb_address_sysctl", REPLICA_SYSCTL_PATH,
                     sysctl_file(REPLICA_SYSCTLS, "only the load balancer holding registry_lb_vip answers ARP for it"),
                     "644", False),
             TlsFile("lb_address_unit", REPLICA_UNIT_PATH, replica_unit(settings.vip_address), "644", False))
    new = tuple(f for f in files if not file_matches(state.files.get(f.label), f.content, f.mode))
    arp = [line.strip() for line in state.lines.get("arp", [])]
    reasons = tuple(reason for reason, drifted in (
        (f"{', '.join(f.path for f in new)} differ from the inventory's", bool(new)),
        (f"the loopback does not hold {settings.vip_address}", settings.vip_address not in loopback),
        ("the ARP settings are not " + ", ".join(f"{n}={v}" for n, v in REPLICA_SYSCTLS),
         arp != [v for _, v in REPLICA_SYSCTLS]),
        (f"{REPLICA_UNIT} does not start at boot", REPLICA_UNIT not in state.enabled_units),
    ) if drifted)
    apply = render("apply-lb-address.sh.j2", unit=REPLICA_UNIT, sysctl=REPLICA_SYSCTL_PATH,
                   address=f"{settings.vip_address}/32") if reasons else ""
    return ReplicaAddress(new, apply, reasons, tuple(a for a in held if a != settings.vip_address and a in loopback))


def ipvs_ports(settings) -> list[int]:
    """The ports IPVS forwards from registry_lb_vip, each a virtual server of its own: the registry's,
    and the token service's with registry_access."""
    return [settings.registry_port] + ([settings.registry_token_port] if settings.registry_access else [])


def replica_drain(settings, container_port: int) -> dict | None:
    """What a replica's scripts need to drain it with ipvs (templates/lb-replica.sh.j2); None without."""
    if not settings.ipvs:
        return None
    return {"sources": [address for _, address in settings.lbs], "ports": ipvs_ports(settings),
            "container_port": container_port, "notice": DRAIN_NOTICE_SECONDS}


def replica_fact_checks(settings) -> tuple:
    """What a replica's DockerHostState reads for replica_address_plan (with or without ipvs: an
    address an earlier run put there is found and removed)."""
    return (("file", "lb_address_sysctl", REPLICA_SYSCTL_PATH), ("file", "lb_address_unit", REPLICA_UNIT_PATH),
            ("lines", "lb_address_unit_lines", REPLICA_UNIT_PATH),
            ("output", "loopback", ("ip", "-o", "-4", "address", "show", "dev", "lo")),
            ("output", "arp", ("sysctl", "-n", *(name for name, _ in REPLICA_SYSCTLS))),
            ("enabled", REPLICA_UNIT, REPLICA_UNIT))


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
    ipvs: tuple[TlsFile, ...] = ()  # with ipvs: the replicas' check, the kernel's setting and module
    kernel: tuple[str, ...] = ()  # with ipvs: why the module is loaded and the setting applied now
    stop_haproxy: bool = False  # with ipvs: haproxy an earlier run started runs or starts at boot


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
    if not settings.ipvs:
        wanted.append(("haproxy.service", "haproxy_cfg", CONFIG_PATH, haproxy_config(settings),
                       ("haproxy", "-c", "-q", "-f"), (0,), stats))
    if settings.registry_lb_vip:
        # keepalived 2.2 (Debian 12) ends a check it passed with SIGTERM to itself (128 + 15); a refused
        # file exits 1 to 5.
        wanted.append(("keepalived.service", "keepalived_conf", KEEPALIVED_CONFIG_PATH,
                       keepalived_config(settings, state.lines.get("addresses", [])),
                       ("keepalived", "--config-test", "-f"), (0, 143), ""))
    tls = () if settings.ipvs else tls_files(material)  # with ipvs, TLS passes through to the replicas
    ipvs = ipvs_files(settings)
    new_ipvs = tuple(f for f in ipvs if not file_matches(state.files.get(f.label), f.content, f.mode))
    live = [line.strip() for line in state.lines.get("ipvs_sysctls", [])]
    kernel = tuple(reason for reason, drifted in (
        (f"{IPVS_SYSCTL_PATH} changed", any(f.label == "ipvs_sysctl" for f in new_ipvs)),
        ("the kernel's " + ", ".join(f"{n}={v}" for n, v in IPVS_SYSCTLS) + " is not set",
         live != [v for _, v in IPVS_SYSCTLS]),
    ) if drifted) if ipvs else ()
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
    stop_haproxy = settings.ipvs and bool({"haproxy.service"} & (set(state.running) | set(state.enabled_units)))
    return LbPlan(missing, new_tls, stale, tuple(steps), new_cache, new_ipvs, kernel, stop_haproxy)
