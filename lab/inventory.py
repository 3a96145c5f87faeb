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


REPLICAS_TEMPLATE = '''"""The lab's hosts, written by `python -m lab up --replicas N`: regenerated on every `up`, do not edit.

{replicas} registry replicas on the lab's S3 store (Ceph RGW on host `store`, which regdeploy does not
manage), behind {balancer} on {lb_names}, which share {vip} (keepalived); every lab host knows that address
as {vip_name}, and clients use the registry at {vip_name}:5000."""

_ssh = {ssh!r}
# Every host agrees on the storage (the secrets are files of the lab, 0600, never in this file).
_shared = {{**_ssh, **{shared!r}}}
# Docker Hub is unreachable from the lab: the registry:2 stand-in is loaded from an archive.
_image = {{"registry_image_archive": {archive!r}, "registry_image_archive_sha256": {archive_sha!r}}}

registry_servers = [
{servers}]

registry_lb = [
{lbs}]

docker_clients = [
{clients}]
'''


def write(lab: config.Lab, hostnames: list[str], specs: dict | None = None, lb_mode: str = "") -> None:
    """The inventory, hosts list and ssh_config of the lab's hosts; `lb_mode`: registry_lb_mode of a lab
    with replicas (empty: the default)."""
    ssh = {
        "ssh_user": "root",
        "ssh_key": str(lab.ssh_key),
        # Lab hosts get new host keys every time they are created: trusting them is the point.
        "ssh_strict_host_key_checking": "no",
        "ssh_known_hosts_file": "/dev/null",
    }
    addresses = {h: lab.address(i) for i, h in enumerate(hostnames)}
    if config.STORE_HOST in hostnames:
        _write_replicas(lab, hostnames, addresses, ssh, lb_mode)
        return
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
    """Inventory data a host's role needs: hosts that pull without Docker get none installed, and
    say which runtime they pull with (what the verify suite checks)."""
    if spec is None or spec.role not in config.WITHOUT_DOCKER:
        return ""
    return f', "docker_install_source": "none", "client_runtimes": [{spec.role!r}]'


def _comment(spec) -> str:
    return f"  # {spec}" if spec is not None and str(spec) != config.DEBIAN_SUITE else ""



def _write_replicas(lab: config.Lab, hostnames: list[str], addresses: dict[str, str], ssh: dict,
                    lb_mode: str = "") -> None:
    servers = [h for h in hostnames if h.startswith("registry")]
    clients = [h for h in hostnames if h.startswith("client")]
    shared = {
        "registry_lb_vip": f"{lab.vip}/24",
        "registry_host": config.VIP_NAME,
        "registry_storage": "s3",
        "registry_s3_endpoint": f"http://{addresses[config.STORE_HOST]}:{config.STORE_PORT}",
        "registry_s3_bucket": config.STORE_BUCKET,
        "registry_s3_access_key": config.STORE_ACCESS_KEY,
        "registry_s3_secret_file": str(lab.s3_secret_path),
        "registry_http_secret_file": str(lab.http_secret_path),
        **({"registry_lb_mode": lb_mode} if lb_mode else {}),
    }
    lab.inventory_path.write_text(REPLICAS_TEMPLATE.format(
        ssh=ssh, shared=shared, replicas=len(servers), archive=str(lab.registry_archive),
        archive_sha=archive_sha256(str(lab.registry_archive)), lb_names=" and ".join(config.LB_HOSTS), vip=lab.vip,
        balancer="IPVS (VMs)" if lb_mode == "ipvs" else "haproxy",
        vip_name=config.VIP_NAME,
        lbs="".join(f'    ({h!r}, {{**_shared, "ssh_hostname": {addresses[h]!r}}}),\n' for h in config.LB_HOSTS),
        servers="".join(f'    ({h!r}, {{**_shared, **_image, "ssh_hostname": {addresses[h]!r}}}),\n' for h in servers),
        clients="".join(f'    ({h!r}, {{**_shared, "ssh_hostname": {addresses[h]!r}}}),\n' for h in clients),
    ))
    lab.hosts_path.write_text(",".join(f"ssh://{h}" for h in hostnames if h != config.STORE_HOST) + "\n")
    # The store is no inventory host (regdeploy does not manage it), but the lab reaches it too.
    write_ssh_config(load_fleet(str(lab.inventory_path)), lab.ssh_config_path,
                     extra=((config.STORE_HOST, addresses[config.STORE_HOST], ssh),))
