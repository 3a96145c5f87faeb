"""Write what pyinfra and testinfra need to reach the lab: an inventory, a hosts list, an ssh_config."""

from __future__ import annotations

from regdeploy.inventory import load_fleet, write_ssh_config
from regdeploy.settings import archive_sha256

from . import config

INVENTORY_TEMPLATE = '''"""The lab's hosts, written by `python -m lab up`: regenerated on every `up`, do not edit."""

_ssh = {ssh!r}

registry_servers = [
    ({server!r}, {{**_ssh, "ssh_hostname": {server_ip!r},
        # Docker Hub is unreachable from the lab: the registry:2 stand-in is loaded from an archive.
        "registry_image_archive": {archive!r},
        "registry_image_archive_sha256": {archive_sha!r}}}),
]

docker_clients = [
{clients}]
'''


def write(lab: config.Lab, hostnames: list[str], specs: dict | None = None) -> None:
    ssh = {
        "ssh_user": "root",
        "ssh_key": str(lab.ssh_key),
        # Lab hosts get new host keys every time they are created: trusting them is the point.
        "ssh_strict_host_key_checking": "no",
        "ssh_known_hosts_file": "/dev/null",
    }
    addresses = {h: lab.address(i) for i, h in enumerate(hostnames)}
    server, clients = hostnames[0], hostnames[1:]
    lab.inventory_path.write_text(INVENTORY_TEMPLATE.format(
        ssh=ssh, server=server, server_ip=addresses[server],
        archive=str(lab.registry_archive), archive_sha=archive_sha256(str(lab.registry_archive)),
        clients="".join(f'    ({c!r}, {{**_ssh, "ssh_hostname": {addresses[c]!r}{_role_data((specs or {}).get(c))}}}),'
                        f'{_comment((specs or {}).get(c))}\n' for c in clients),
    ))
    lab.hosts_path.write_text(",".join(f"ssh://{h}" for h in hostnames) + "\n")
    write_ssh_config(load_fleet(str(lab.inventory_path)), lab.ssh_config_path)


def _role_data(spec) -> str:
    """Inventory data a host's role needs: hosts that pull without Docker get none installed."""
    if spec is None or spec.role not in config.WITHOUT_DOCKER:
        return ""
    return ', "docker_install_source": "none"'


def _comment(spec) -> str:
    return f"  # {spec}" if spec is not None and str(spec) != config.DEBIAN_SUITE else ""

