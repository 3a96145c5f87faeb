"""Reach the hosts of any inventory from the verify suite: one ssh_config from the inventory's own
SSH data, testinfra hosts, commands over ssh; through sudo where the inventory says `_sudo`."""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import testinfra

from regdeploy.inventory import Fleet, InventoryHost, load_fleet, write_ssh_config


@dataclass
class Access:
    inventory: Path
    fleet: Fleet
    ssh_config: Path

    @classmethod
    def load(cls, inventory: Path, workdir: Path) -> "Access":
        fleet = load_fleet(str(inventory))
        return cls(inventory, fleet, write_ssh_config(fleet, workdir / "ssh_config"))

    def _inventory_host(self, h: InventoryHost | str) -> InventoryHost:
        return h if isinstance(h, InventoryHost) else next(x for x in self.fleet.hosts if x.name == h)

    def host(self, h: InventoryHost | str):
        """testinfra's host, through sudo where the inventory logs in as another user with `_sudo`."""
        h = self._inventory_host(h)
        return testinfra.get_host(f"ssh://{h.name}", ssh_config=str(self.ssh_config), sudo=h.sudo)

    def ssh(self, h: InventoryHost | str, command: str, stdin=None, check: bool = True) -> str:
        h = self._inventory_host(h)
        name = h.name
        if h.sudo:
            command = f"sudo -n sh -c {shlex.quote(command)}"
        # A string is given as the command's input (a password: never on a command line), a file as is.
        text = isinstance(stdin, str)
        result = subprocess.run(["ssh", "-F", str(self.ssh_config), name, command],
                                **({"input": stdin} if text else {"stdin": stdin}),
                                capture_output=True, text=stdin is None or text, timeout=600)
        out = result.stdout if isinstance(result.stdout, str) else result.stdout.decode()
        err = result.stderr if isinstance(result.stderr, str) else result.stderr.decode()
        if check and result.returncode != 0:
            raise AssertionError(f"{name}: {command!r} exited {result.returncode}: {err.strip()}")
        return out.strip()

    def load_image_archive(self, h: InventoryHost | str, archive: Path) -> None:
        with open(archive, "rb") as handle:
            self.ssh(h, "docker load -q", stdin=handle)
