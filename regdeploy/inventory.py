"""Load a pyinfra inventory outside pyinfra's CLI (for the regdeploy command and the tests)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# pyinfra's CLI package monkey-patches the standard library with gevent when imported: import it
# before anything imports ssl (requests), as the pyinfra command itself does.
from pyinfra.api import State
from pyinfra.context import ctx_state
from pyinfra_cli import util as pyinfra_cli_util
from pyinfra_cli.inventory import make_inventory

from .settings import Settings, inventory_groups, validate_hosts


@dataclass(frozen=True)
class InventoryHost:
    name: str
    groups: frozenset[str]
    data: dict[str, Any]
    settings: Settings

    @property
    def sudo(self) -> bool:
        """Whether commands on this host go through sudo (pyinfra's `_sudo`), as the deploy's do."""
        return bool(self.data.get("_sudo"))

    @property
    def address(self) -> str:
        """Where the controller connects to (ssh_hostname, else the inventory name)."""
        return str(self.data.get("ssh_hostname") or self.name)


@dataclass(frozen=True)
class Fleet:
    server: InventoryHost  # the first (or only) registry server
    clients: tuple[InventoryHost, ...]
    # Every registry server (replicas on shared storage: several) and the registry_lb hosts, if any.
    servers: tuple[InventoryHost, ...] = ()
    lbs: tuple[InventoryHost, ...] = ()

    @property
    def lb(self) -> InventoryHost | None:
        """The first load balancer, if any."""
        return self.lbs[0] if self.lbs else None

    @property
    def hosts(self) -> tuple[InventoryHost, ...]:
        servers = self.servers or (self.server,)
        return (*servers, *(lb for lb in self.lbs if lb not in self.clients), *self.clients)

    @property
    def registry_address(self) -> str:
        return self.server.settings.registry_address

    @property
    def registry_api_address(self) -> str:
        """host:port the controller uses for the registry API: the load balancers' shared address, the
        load balancer's SSH address, else the server's."""
        front = self.server.settings.vip_address or (self.lb or self.server).address
        return f"{front}:{self.server.settings.registry_port}"


def load_fleet(path: str, check_files: bool = False) -> Fleet:
    """The inventory's hosts with validated settings. Controller-side archives are only checked
    with `check_files` (the deploy checks them itself; listing a catalog does not need them)."""
    # pyinfra's inventory loader needs a pyinfra State in context, as its CLI sets up, and caches
    # compiled files for the life of the process: drop the cached copy, the file may have changed.
    ctx_state.set(State())
    path = os.path.abspath(path)
    pyinfra_cli_util.PYTHON_CODES.pop(path, None)
    inventory = make_inventory(path, cwd=os.getcwd())
    raw = [(h.name, h.data.dict(), set(h.groups)) for h in inventory]
    settings = validate_hosts(raw, check_files=check_files)
    group = inventory_groups(raw)
    # Hosts in none of regdeploy's groups are no part of the fleet: nothing here reaches them.
    hosts = {name: InventoryHost(name, frozenset(groups), data, settings[name]) for name, data, groups in raw
             if name in settings}
    servers = tuple(h for h in hosts.values() if group.servers in h.groups)
    clients = tuple(h for h in hosts.values() if group.clients in h.groups and h not in servers)
    lbs = tuple(h for h in hosts.values() if group.lb in h.groups)
    return Fleet(server=servers[0], clients=clients, servers=servers, lbs=lbs)


def write_ssh_config(fleet: Fleet, path: Path, extra: tuple[tuple[str, str, dict], ...] = ()) -> Path:
    """An ssh_config for every inventory host, from the same data pyinfra connects with; `extra`:
    (name, address, data) of hosts outside the inventory reached alike (the lab's store)."""
    hosts = [(h.name, h.address, h.data) for h in fleet.hosts] + list(extra)
    path.write_text("\n".join(ssh_config_block(*host) for host in hosts))
    return path


def ssh_config_block(name: str, address: str, data: dict[str, Any]) -> str:
    """One host's ssh_config block from its pyinfra connection data."""
    lines = [f"Host {name}", f"  HostName {address}"]
    if data.get("ssh_user"):
        lines.append(f"  User {data['ssh_user']}")
    if data.get("ssh_port"):
        lines.append(f"  Port {data['ssh_port']}")
    if data.get("ssh_key"):
        lines += [f"  IdentityFile {os.path.expanduser(str(data['ssh_key']))}", "  IdentitiesOnly yes"]
    if str(data.get("ssh_strict_host_key_checking", "")).lower() == "no":
        lines += ["  StrictHostKeyChecking no", "  UserKnownHostsFile /dev/null", "  LogLevel ERROR"]
    # One master connection per host: every testinfra check reuses it. Keepalives end a master
    # whose host went away (a removed lab host) instead of hanging the next connection.
    lines += ["  ControlMaster auto", "  ControlPath /tmp/regdeploy-ssh-%C", "  ControlPersist 120s",
              "  ServerAliveInterval 5", "  ServerAliveCountMax 3"]
    return "\n".join(lines) + "\n"
