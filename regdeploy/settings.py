"""Read every host's inventory data, apply the defaults, validate it all before any host is touched.

Validation runs over the whole inventory on the first host the deploy file sees, so one bad value
on one client stops the deploy for every host, with every problem listed at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import posixpath
from dataclasses import dataclass
from typing import Any, Iterable

from .variables import DEFAULTS, VARIABLES, Invalid

VARIABLES_BY_NAME = {v.name: v for v in VARIABLES}

# The variables that name regdeploy's groups, in Groups' order.
GROUP_VARIABLES = ("registry_servers_group", "docker_clients_group", "registry_lb_group")


@dataclass(frozen=True)
class Groups:
    """The inventory's names for regdeploy's groups (registry_servers_group, docker_clients_group,
    registry_lb_group). Only their hosts are touched; every other inventory host is left alone."""

    servers: str = VARIABLES_BY_NAME["registry_servers_group"].default
    clients: str = VARIABLES_BY_NAME["docker_clients_group"].default
    # The load balancer in front of several replicas (haproxy): at most one host, not also a server.
    lb: str = VARIABLES_BY_NAME["registry_lb_group"].default

    @property
    def names(self) -> tuple[str, str, str]:
        return (self.servers, self.clients, self.lb)

    def holds(self, groups: set[str] | frozenset[str]) -> bool:
        """Whether a host in `groups` is one of regdeploy's (and so may be touched)."""
        return bool(set(groups) & set(self.names))


class ConfigError(Exception):
    """Inventory data regdeploy cannot use; raised before any operation runs on any host."""


@dataclass(frozen=True)
class Settings:
    """The validated settings for one host: one typed field per variable (lists are tuples; the
    fields and their types are checked against VARIABLES by tests/unit/test_variables.py), then the
    host's name and roles (a registry server, the load balancer, a host that uses the registry), the
    names and addresses certificates cover, every replica's and the load balancer's (name, address)."""

    host_name: str
    registry_host: str
    registry_port: int
    registry_metrics_port: int
    registry_image: str
    registry_image_archive: str
    registry_image_archive_sha256: str
    registry_container_name: str
    registry_data_dir: str
    registry_config_dir: str
    registry_restart_policy: str
    registry_ready_timeout: int
    registry_mirrors: tuple[str, ...]
    registry_proxy_remote_url: str
    registry_proxy_port: int
    registry_proxy_username: str
    registry_proxy_password_file: str
    registry_proxy_container_name: str
    registry_proxy_data_dir: str
    registry_storage: str
    registry_s3_endpoint: str
    registry_s3_region: str
    registry_s3_bucket: str
    registry_s3_access_key: str
    registry_s3_secret_file: str
    registry_http_secret_file: str
    registry_lb_stats_port: int
    registry_lb_vip: str
    registry_lb_mode: str
    registry_lb_vrid: int
    registry_lb_cache: bool
    registry_seed_images: tuple[str, ...]
    registry_seed_archives: tuple[str, ...]
    docker_install_source: str
    docker_ce_repo_url: str
    client_runtimes: tuple[str, ...]
    docker_daemon_json: str
    registry_tls: bool
    registry_tls_dir: str
    registry_tls_names: tuple[str, ...]
    registry_tls_cert: str
    registry_tls_key: str
    registry_tls_ca: str
    registry_auth: bool
    registry_users: tuple[str, ...]
    registry_password_file: str
    registry_login_user: str
    registry_access: tuple[str, ...]
    registry_token_port: int
    registry_docker_login: bool
    registry_login_local_users: tuple[str, ...]
    registry_allow_delete: bool
    registry_retention: tuple[str, ...]
    registry_gc_schedule: str
    registry_servers_group: str
    docker_clients_group: str
    registry_lb_group: str
    host_caches: bool
    deploy_lock_timeout: int
    is_server: bool = False
    server_names: tuple[str, ...] = ()
    serves_cache: bool = False
    is_lb: bool = False
    uses_registry: bool = True
    replicas: tuple[tuple[str, str], ...] = ()
    lbs: tuple[tuple[str, str], ...] = ()

    @property
    def registry_address(self) -> str:
        return registry_address(self.registry_host, self.registry_port)

    @property
    def registry_config_path(self) -> str:
        """The rendered config.yml on the server (mounted read-only into the container); the
        pull-through cache's is cache.yml beside it (it holds the upstream's credentials: 0600)."""
        return posixpath.join(self.registry_config_dir, "cache.yml" if self.serves_cache else "config.yml")

    @property
    def proxy_mirror(self) -> str:
        """The pull-through cache's URL as Docker's registry-mirrors lists it; empty without a cache."""
        if not self.registry_proxy_remote_url:
            return ""
        scheme = "https" if self.registry_tls else "http"
        return f"{scheme}://{registry_address(self.registry_host, self.registry_proxy_port)}"

    @property
    def stale_mirrors(self) -> tuple[str, ...]:
        """The pull-through cache's URLs (either scheme) that Docker hosts must no longer list: all of
        them without a cache (one an earlier run set up), the other scheme's with one."""
        address = registry_address(self.registry_host, self.registry_proxy_port)
        return tuple(url for url in (f"http://{address}", f"https://{address}") if url not in self.docker_mirrors)

    @property
    def docker_mirrors(self) -> tuple[str, ...]:
        """registry-mirrors every Docker host gets: the operator's, then the pull-through cache."""
        return tuple(dict.fromkeys(m for m in (*self.registry_mirrors, self.proxy_mirror) if m))

    @property
    def tls_names(self) -> tuple[str, ...]:
        """Every name and address clients may use for the registry: what its certificate covers."""
        names = (self.registry_host, self.vip_address, *self.server_names, *self.registry_tls_names)
        return tuple(dict.fromkeys(n for n in names if n))

    @property
    def several_replicas(self) -> bool:
        return len(self.replicas) > 1

    @property
    def first_replica(self) -> bool:
        """The server that does what must happen once per registry, not per replica (seeding)."""
        return bool(self.replicas) and self.replicas[0][0] == self.host_name

    @property
    def lb_stats_urls(self) -> tuple[str, ...]:
        """haproxy's status page on each registry_lb host (where a replica drains and waits to be UP); ()
        with ipvs (lb_ipvs)."""
        if self.ipvs:
            return ()
        return tuple(f"http://{address}:{self.registry_lb_stats_port}/stats" for _, address in self.lbs)

    @property
    def blob_cache_address(self) -> str:
        """host:port of the blob-descriptor cache the replicas share (registry_lb_cache); empty without
        one: with one replica, or without load balancers."""
        if not (self.registry_lb_cache and self.several_replicas and self.lbs):
            return ""
        from .load_balancer import CACHE_PORT
        # With ipvs every replica holds registry_lb_vip itself: the first load balancer's own address.
        return f"{(not self.ipvs and self.vip_address) or self.lbs[0][1]}:{CACHE_PORT}"

    @property
    def ipvs(self) -> bool:
        """registry_lb_mode=ipvs, with load balancers in front of the replicas."""
        return self.registry_lb_mode == "ipvs" and bool(self.lbs)

    @property
    def vip_address(self) -> str:
        """registry_lb_vip without its prefix; empty without one."""
        return self.registry_lb_vip.partition("/")[0]

    @property
    def login_user(self) -> str:
        return self.registry_login_user or (self.registry_users[0] if self.registry_users else "")


# Variables every host must agree on, since they all talk to the same registry.
SHARED = tuple(v.name for v in VARIABLES if v.shared)


def cache_settings(settings: Settings) -> Settings:
    """The pull-through cache seen as a registry of its own (registry_proxy_remote_url): its name, port,
    storage and config file, no metrics port, no accounts (Docker cannot log in to a mirror) and no
    deletes. The deploy, its fact and its run script then treat it as they treat the registry."""
    return dataclasses.replace(
        settings, serves_cache=True, registry_container_name=settings.registry_proxy_container_name,
        registry_storage="filesystem",
        registry_port=settings.registry_proxy_port, registry_data_dir=settings.registry_proxy_data_dir,
        registry_metrics_port=0, registry_auth=False, registry_access=(), registry_allow_delete=False, registry_gc_schedule="",
        registry_seed_images=(), registry_seed_archives=())


def registry_address(host: str, port: int) -> str:
    """`<host>:<port>`, the name clients push to and list in insecure-registries: built only here."""
    return f"{host}:{port}"


def _get(data: Any, name: str) -> Any:
    return data.get(name) if hasattr(data, "get") else getattr(data, name, None)


def _raw(data: Any, name: str) -> Any:
    value = _get(data, name)
    return DEFAULTS[name] if value is None else value


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_archive_hashes: dict[tuple[str, int, int], str] = {}


def archive_sha256(path: str) -> str:
    """SHA-256 of a controller file, computed once per version of the file and process (a deploy
    asks for it on every host, for validation and for the container spec)."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
    if key not in _archive_hashes:
        _archive_hashes[key] = _sha256(path)
    return _archive_hashes[key]


def build_settings(host_name: str, data: Any, server_name: str, is_server: bool,
                   errors: list[str], check_files: bool = True, server_address: str = "", *,
                   replicas: tuple = (), lbs: tuple = (), is_lb: bool = False, uses_registry: bool = True) -> Settings:
    """Settings for one host from its data; problems are appended to `errors` (nothing raised).

    Every variable is parsed by its kind (variables.py); a refused value is reported and replaced
    by its default so the other checks still run. `check_files` checks the controller-side archives
    (existence, SHA-256): a deploy needs them, a catalog listing does not. `replicas` and `lbs`: every
    server's and load balancer's (name, address) (default: the one server).
    """
    where = f"host {host_name!r}"
    values: dict[str, Any] = {}
    for variable in VARIABLES:
        try:
            values[variable.name] = variable.kind.parse(variable.name, _raw(data, variable.name))
        except Invalid as exc:
            errors.append(f"{where}: {exc}")
            values[variable.name] = variable.kind.parse(variable.name, variable.default)

    # What depends on more than one value, or on the controller's files.
    if not values["registry_host"]:
        # Clients reach several replicas through the load balancers' shared address, else the one load
        # balancer, one server directly.
        default_host = values["registry_lb_vip"].partition("/")[0] or (lbs[0][0] if lbs else server_name)
        try:
            values["registry_host"] = VARIABLES_BY_NAME["registry_host"].kind.parse("registry_host", default_host)
        except Invalid as exc:
            errors.append(f"{where}: {exc}")
            values["registry_host"] = default_host
    archive, expected_sha = values["registry_image_archive"], values["registry_image_archive_sha256"]
    if is_server and archive and check_files:
        if not os.path.isfile(archive):
            errors.append(f"{where}: registry_image_archive={archive!r} does not exist on the controller; "
                          "give the path of a `docker save` tarball or leave it empty to pull")
        elif expected_sha and archive_sha256(archive) != expected_sha:
            errors.append(f"{where}: registry_image_archive {archive!r} has SHA-256 "
                          f"{archive_sha256(archive)}, not registry_image_archive_sha256={expected_sha}")
    if is_server and check_files:
        for path in values["registry_seed_archives"]:
            if not os.path.isfile(path):
                errors.append(f"{where}: registry_seed_archives entry {path!r} does not exist on the controller")
    errors.extend(f"{where}: {problem}" for problem in _secure_mode_problems(values))
    if values["registry_metrics_port"] and values["registry_metrics_port"] == values["registry_port"]:
        errors.append(f"{where}: registry_metrics_port={values['registry_metrics_port']} is also registry_port: "
                      "the registry and its metrics need a port each")
    if values["registry_proxy_remote_url"]:
        errors.extend(f"{where}: {problem}" for problem in _cache_problems(values))
    replicas = replicas or ((server_name, server_address or server_name),)
    errors.extend(f"{where}: {problem}" for problem in _storage_problems(values, len(replicas)))
    if lbs and values["registry_access"] and values["registry_token_port"] == values["registry_lb_stats_port"]:
        errors.append(f"{where}: registry_token_port={values['registry_token_port']} is also registry_lb_stats_port: "
                      "the load balancer needs a port for each")
    if lbs and values["registry_lb_stats_port"] == values["registry_port"]:
        errors.append(f"{where}: registry_lb_stats_port={values['registry_port']} is also registry_port: the load "
                      "balancer needs a port for each")

    names = (server_name, server_address) if len(replicas) == 1 else tuple(n for r in replicas for n in r)
    return Settings(host_name=host_name, is_server=is_server, server_names=names, replicas=tuple(replicas),
                    lbs=tuple(lbs), is_lb=is_lb, uses_registry=uses_registry, **values)


def _storage_problems(values: dict[str, Any], replicas: int) -> list[str]:
    """What the storage variables cannot mean, alone or with `replicas` servers."""
    problems = []
    if values["registry_storage"] == "s3":
        problems += [f"registry_storage=s3 needs {name}" for name in ("registry_s3_bucket", "registry_s3_access_key")
                     if not values[name]]
    if replicas > 1:
        if values["registry_storage"] != "s3":
            problems.append(f"{replicas} hosts in {values['registry_servers_group']!r} with registry_storage="
                            f"{values['registry_storage']!r}: each replica would keep its own images, and a pull "
                            "would miss what was pushed to another. Set registry_storage=s3 (a bucket they all "
                            "share), or keep one server")
        if values["registry_gc_schedule"]:
            problems.append("registry_gc_schedule with several replicas: a timer on one would collect while "
                            "the others take pushes; run `regdeploy gc` or `regdeploy prune` instead, which make "
                            "every replica read-only in turn first")
        if values["registry_proxy_remote_url"]:
            problems.append("registry_proxy_remote_url with several replicas: the pull-through cache runs "
                            "on a single server only")
    return problems


def _cache_problems(values: dict[str, Any]) -> list[str]:
    """What the pull-through cache's variables cannot mean with the registry's."""
    port = values["registry_proxy_port"]
    problems = [f"registry_proxy_port={port} is also {name}: the cache needs a port of its own"
                for name in ("registry_port", "registry_metrics_port") if values[name] == port]
    for name in ("registry_container_name", "registry_data_dir"):
        proxy_name = name.replace("registry_", "registry_proxy_", 1)
        if values[proxy_name] == values[name]:
            problems.append(f"{proxy_name}={values[name]!r} is also {name}: the cache would take over the registry's")
    return problems


def _secure_mode_problems(values: dict[str, Any]) -> list[str]:
    """What the secure-mode variables cannot mean together."""
    problems = []
    given = [values[name] for name in ("registry_tls_cert", "registry_tls_key", "registry_tls_ca")]
    if any(given) and not all(given):
        problems.append("registry_tls_cert, registry_tls_key and registry_tls_ca go together: give all three "
                        "(your own certificate) or none (regdeploy makes them)")
    if values["registry_retention"]:
        from . import retention
        try:
            retention.parse_rules(values["registry_retention"])
        except retention.RetentionError as exc:
            problems.append(str(exc))
    if values["registry_access"] and not values["registry_auth"]:
        problems.append("registry_access needs registry_auth=true (and so registry_tls): the rules are about "
                        "registry_users' accounts")
    if values["registry_auth"]:
        if not values["registry_tls"]:
            problems.append("registry_auth needs registry_tls=true: without TLS, Docker sends every password in "
                            "clear over the network")
        if not values["registry_users"]:
            problems.append("registry_auth needs at least one user in registry_users")
        elif values["registry_login_user"] and values["registry_login_user"] not in values["registry_users"]:
            problems.append(f"registry_login_user={values['registry_login_user']!r} is not one of registry_users "
                            f"({', '.join(values['registry_users'])})")
        if values["registry_access"]:
            from . import access
            try:
                rules = access.parse_rules(values["registry_access"])
                problems += access.rule_problems(rules, values["registry_users"])
            except access.AccessError as exc:
                problems.append(str(exc))
            if values["registry_token_port"] == values["registry_port"]:
                problems.append(f"registry_token_port={values['registry_token_port']} is also registry_port: the "
                                "token service and the registry need a port each")
        if "root" in values["registry_login_local_users"]:
            problems.append("registry_login_local_users lists root, whose Docker logs in anyway: take it out")
        if (values["registry_seed_images"] or values["registry_seed_archives"]) and not values["registry_docker_login"]:
            problems.append("seeding the registry with registry_auth needs registry_docker_login=true (the server's "
                            "Docker pushes the seed images as registry_login_user)")
    return problems


def inventory_groups(hosts: Iterable[tuple[str, Any, set[str]]]) -> Groups:
    """The names of regdeploy's groups, which every inventory host must agree on (set them in
    group_data/all.py): a host's own value could otherwise put it in or out of the deploy."""
    hosts = list(hosts)
    errors, names = [], {}
    for variable in GROUP_VARIABLES:
        kind = VARIABLES_BY_NAME[variable].kind
        values: dict[Any, str] = {}
        for name, data, _ in hosts:
            try:
                values.setdefault(kind.parse(variable, _raw(data, variable)), name)
            except Invalid as exc:
                errors.append(f"host {name!r}: {exc}")
        if len(values) > 1:
            errors.append(f"hosts disagree on {variable} ({', '.join(sorted(values))}); set it once for every "
                          "host (group_data/all.py)")
        names[variable] = next(iter(values), VARIABLES_BY_NAME[variable].default)
    groups = Groups(*(names[v] for v in GROUP_VARIABLES))
    if not errors and len(set(groups.names)) < 3:
        errors.append(f"registry_servers_group, docker_clients_group and registry_lb_group name three different "
                      f"groups, not {', '.join(groups.names)}")
    if errors:
        raise ConfigError("invalid inventory data, nothing was changed on any host:\n  - " + "\n  - ".join(errors))
    return groups


def left_alone(names: Iterable[str], settings: dict[str, Settings]) -> str:
    """What a deploy says once about the inventory's hosts in none of regdeploy's groups (empty: none)."""
    others = [name for name in names if name not in settings]
    if not others or not settings:
        return ""
    some = next(iter(settings.values()))
    groups = ", ".join(getattr(some, variable) for variable in GROUP_VARIABLES)
    return (f"regdeploy leaves alone {len(others)} inventory host{'s' if len(others) > 1 else ''} in none of its "
            f"groups ({groups}): {', '.join(others)}")


def validate_hosts(hosts: Iterable[tuple[str, Any, set[str]]], check_files: bool = True) -> dict[str, Settings]:
    """Validate every (name, data, groups) host of regdeploy's groups; return their settings (hosts
    in none of its groups have none: they are left alone) or raise one ConfigError.

    One host in `registry_servers`, or several replicas on shared storage with a load balancer (one
    host in `registry_lb`, or the operator's own as registry_host). Every host's registry address
    must agree, since they all talk to the same registry.
    """
    hosts = list(hosts)
    group = inventory_groups(hosts)
    hosts = [(name, data, groups) for name, data, groups in hosts if group.holds(groups)]
    servers = [name for name, _, groups in hosts if group.servers in groups]
    lbs = [name for name, _, groups in hosts if group.lb in groups]
    errors: list[str] = []
    if not servers:
        raise ConfigError(
            f"the inventory has no host in the group {group.servers!r}; put the registry server there (or "
            f"several replicas, with registry_storage=s3 and a host in {group.lb!r}) and the other machines "
            f"in {group.clients!r}"
        )
    if set(lbs) & set(servers):
        raise ConfigError(f"a host in {group.lb!r} cannot also be in {group.servers!r} (both listen on "
                          f"registry_port): {', '.join(sorted(set(lbs) & set(servers)))}")
    data_of = {name: data for name, data, _ in hosts}

    def address(name: str) -> str:
        return str(_get(data_of[name], "ssh_hostname") or name)

    replicas = tuple((name, address(name)) for name in servers)
    lb_pairs = tuple((name, address(name)) for name in lbs)
    server = servers[0]
    server_address = str(_get(data_of[server], "ssh_hostname") or "")
    settings = {
        name: build_settings(name, data, server, group.servers in groups, errors, check_files, server_address,
                             replicas=replicas, lbs=lb_pairs, is_lb=group.lb in groups,
                             uses_registry=bool(groups & {group.servers, group.clients}))
        for name, data, groups in hosts
    }
    if len(servers) > 1 and not lbs and not errors and not _get(data_of[server], "registry_host"):
        errors.append(f"{len(servers)} hosts in {group.servers!r} need one address for clients: put a host in "
                      f"{group.lb!r} (regdeploy runs haproxy there), or set registry_host to your own load balancer")
    if not errors:
        errors.extend(_lb_problems(group.lb, lb_pairs, settings[server]))
    addresses = {s.registry_address for s in settings.values()}
    if not errors and len(addresses) > 1:
        errors.append(f"hosts disagree on the registry address ({', '.join(sorted(addresses))}); "
                      "set registry_host/registry_port for all hosts (group data), not per host")
    for name in SHARED:
        values = {repr(getattr(s, name)) for s in settings.values()}
        if not errors and len(values) > 1:
            errors.append(f"hosts disagree on {name} ({', '.join(sorted(values))}); set it for all hosts "
                          "(group data), not per host")
    if not errors:
        errors.extend(_login_problems(settings))
    if not errors and check_files:
        errors.extend(_secure_material_problems(settings[server]))
    if errors:
        raise ConfigError("invalid inventory data, nothing was changed on any host:\n  - "
                          + "\n  - ".join(errors))
    return settings


def _lb_problems(group: str, lbs: tuple[tuple[str, str], ...], settings: Settings) -> list[str]:
    """Several load balancers share registry_lb_vip (keepalived): each sends VRRP to the others'
    addresses, which must be IPv4 addresses."""
    import ipaddress

    if len(lbs) > 1 and not settings.registry_lb_vip:
        return [f"{len(lbs)} hosts in {group!r} ({', '.join(n for n, _ in lbs)}) need one address for clients: "
                "set registry_lb_vip to a free IPv4 address on their network (keepalived moves it between them)"]
    if settings.registry_lb_vip and not lbs:
        return [f"registry_lb_vip={settings.registry_lb_vip!r} without a host in {group!r}: put the load balancers "
                "there, or leave registry_lb_vip empty"]
    if settings.registry_lb_mode == "ipvs" and lbs and not settings.registry_lb_vip:
        return [f"registry_lb_mode='ipvs' needs registry_lb_vip: the replicas hold that address on their loopback "
                "and answer the clients from it; set it to a free IPv4 address on the replicas' network"]
    problems = []
    for name, address in settings.replicas if settings.ipvs else ():
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            problems.append(f"host {name!r}: with registry_lb_mode='ipvs' the load balancers forward to each replica's "
                            f"IPv4 address, and its address is {address!r}; set its ssh_hostname to its IPv4 address "
                            "on registry_lb_vip's network")
    for name, address in lbs if settings.registry_lb_vip else ():
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            problems.append(f"host {name!r} in {group!r}: keepalived's peers are IPv4 addresses, and its address is "
                            f"{address!r}; set its ssh_hostname to its IPv4 address on registry_lb_vip's network")
        if address == settings.vip_address:
            problems.append(f"host {name!r} in {group!r} has registry_lb_vip's address {address!r} as its own; "
                            "the shared address must be one no host holds")
    return problems


def _login_problems(settings: dict[str, Settings]) -> list[str]:
    """With registry_access: each host's login account against the rules (the server's must not lock
    regdeploy's own scripts out)."""
    from . import access

    shared = next(iter(settings.values())).registry_access  # the same on every host (SHARED, checked before)
    if not shared:
        return []
    rules = access.parse_rules(shared)
    problems = []
    for name, host in settings.items():
        if host.uses_registry and (host.is_server or host.registry_docker_login):
            problems += access.login_problems(rules, name, host.login_user, host.is_server)
    return problems


def _secure_material_problems(settings: Settings) -> list[str]:
    """The operator's certificate files and the accounts' passwords, checked before any host is
    touched (the generated CA and certificate are made by the deploy itself)."""
    from . import security
    from .credentials import CredentialError
    from .pki import TlsError

    problems = []
    try:
        if settings.registry_tls_cert:
            security.tls_material(settings)
    except TlsError as exc:
        problems.append(str(exc))
    try:
        security.passwords(settings)
    except CredentialError as exc:
        problems.append(str(exc))
    for secret in (security.proxy_credentials, security.s3_secret, security.http_secret):
        try:
            secret(settings)
        except CredentialError as exc:
            problems.append(str(exc))
    return problems


_validated: dict[int, tuple[Any, dict[str, Settings]]] = {}


def from_inventory(inventory: Any) -> dict[str, Settings]:
    """validate_hosts() for a pyinfra Inventory (every host of regdeploy's groups, active or not:
    --limit must not hide errors). pyinfra runs deploy.py once per host: the inventory is validated on the first call
    only, not N times over N hosts."""
    cached = _validated.get(id(inventory))
    if cached is None or cached[0] is not inventory:
        cached = (inventory, validate_hosts((h.name, h.data, set(h.groups)) for h in inventory))
        _validated[id(inventory)] = cached
    return cached[1]
