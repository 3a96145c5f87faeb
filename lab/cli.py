"""`python -m lab up|down|status|ssh|reboot|images|demo`."""

from __future__ import annotations

import os
import sys

import click

from . import config, hosts, image
from . import ssh as lab_ssh
from .docker import require_engine


@click.group()
@click.option("--name", default=None, help="Lab name (prefix of everything it creates). "
              "Default: $REGDEPLOY_LAB or regdeploy-lab. Its /24: $REGDEPLOY_LAB_SUBNET or derived from the name.")
@click.pass_context
def main(ctx: click.Context, name: str | None) -> None:
    """Throwaway Debian 12 hosts for regdeploy's demo and tests."""
    ctx.obj = config.default_lab(name)


@main.command()
@click.option("--clients", default=2, show_default=True, help="Number of client hosts (besides the server).")
@click.option("--rebuild", is_flag=True, help="Rebuild the host and stand-in images from scratch.")
@click.option("--os", "os_spec", default="", metavar="SPEC,...",
              help="Each host's Debian release and role, server first: one entry for all hosts or one per "
                   "host, `suite[:role]` with suite bookworm (default), trixie or sid and role docker "
                   "(default), containerd-store, containerd or podman; e.g. "
                   "bookworm,trixie,sid:containerd-store,trixie:podman.")
@click.option("--vm", "vms", is_flag=True,
              help="Boot the hosts as qemu virtual machines (own kernel, real reboot) instead of containers.")
@click.option("--replicas", default=0, show_default=True,
              help="Registry replicas (registry1..N) on a one-node Ceph S3 store (host store) behind haproxy "
                   "(host lb), instead of the one server.")
@click.option("--lb-vms", is_flag=True,
              help="With --replicas: the load balancers lb1 and lb2 are VMs on the lab's network, with IPVS "
                   "(registry_lb_mode=ipvs), instead of containers.")
@click.pass_obj
def up(lab: config.Lab, clients: int, rebuild: bool, os_spec: str, vms: bool, replicas: int, lb_vms: bool) -> None:
    """Start (or grow) the lab and write its inventory."""
    started = hosts.up(lab, clients=clients, rebuild=rebuild, os_spec=os_spec, vms=vms, replicas=replicas,
                       lb_vms=lb_vms)
    click.echo(f"lab {lab.name}: {', '.join(started)} answer SSH")
    click.echo(f"  pyinfra inventory: {lab.inventory_path}")
    click.echo(f"  testinfra hosts:   --hosts={lab.hosts_path.read_text().strip()} "
               f"--ssh-config={lab.ssh_config_path}")


@main.command()
@click.pass_obj
def down(lab: config.Lab) -> None:
    """Remove every host, network and volume of the lab (images stay for reuse)."""
    require_engine()
    removed = hosts.down(lab)
    click.echo(f"lab {lab.name}: removed {len(removed)} objects")


@main.command()
@click.pass_obj
def status(lab: config.Lab) -> None:
    """List the lab's hosts and whether they answer SSH."""
    require_engine()
    names = hosts.running_hosts(lab)
    if not names:
        click.echo(f"lab {lab.name}: no hosts")
        sys.exit(1)
    for hostname in names:
        state = "ssh ok" if lab.ssh_config_path.exists() and lab_ssh.ssh_ok(lab, hostname) else "no ssh"
        click.echo(f"{hostname:12} {state}")


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("hostname")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def ssh(lab: config.Lab, hostname: str, command: tuple[str, ...]) -> None:
    """Open a shell (or run COMMAND) on a lab host."""
    argv = lab_ssh.ssh_command(lab, hostname, *command)
    os.execvp(argv[0], argv)


@main.command()
@click.argument("hostname")
@click.pass_obj
def reboot(lab: config.Lab, hostname: str) -> None:
    """Restart one host the way a machine reboot would; its volume and containers persist."""
    hosts.reboot(lab, hostname)
    click.echo(f"{hostname} is back")


@main.command()
@click.option("--rebuild", is_flag=True)
@click.pass_obj
def images(lab: config.Lab, rebuild: bool) -> None:
    """Build the host images (every release) and the registry:2 / busybox stand-in archives."""
    require_engine()
    image.build_all(lab, rebuild=rebuild, suites=config.SUITES)
    click.echo(f"{', '.join(config.host_image(s) for s in config.SUITES)}, {lab.registry_archive}, {lab.registry3_archive}, "
               f"{lab.test_image_archive}")


@main.command(name="vm-check", context_settings={"ignore_unknown_options": True})
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def vm_check(pytest_args: tuple[str, ...]) -> None:
    """On VMs (1 server + 1 client): deploy, a second run that changes nothing, the verify suite with
    its round trip, a real reboot of the server with the registry back and every image intact, then
    remove the VMs. It is tests/vm/test_vm_tier.py, run by pytest (extra arguments go to pytest)."""
    _pytest("tests/vm/test_vm_tier.py", pytest_args)


@main.command(name="ipvs-check", context_settings={"ignore_unknown_options": True})
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def ipvs_check(pytest_args: tuple[str, ...]) -> None:
    """registry_lb_mode=ipvs: two load-balancer VMs in front of 3 replicas, and its drills (a load
    balancer's and a replica's power cut, a rolling change, a replica taken out, TLS). Alone on the
    machine: beside another test run the emulated load balancers' checks time out. It is
    tests/vm/test_ipvs.py, run by pytest (extra arguments go to pytest)."""
    _pytest("tests/vm/test_ipvs.py", pytest_args)


def _pytest(path: str, pytest_args: tuple[str, ...]) -> None:
    argv = [sys.executable, "-m", "pytest", str(config.REPO_ROOT / path), *pytest_args]
    os.chdir(config.REPO_ROOT)
    os.execv(argv[0], argv)


@main.command()
@click.option("--clients", default=2, show_default=True)
@click.pass_obj
def demo(lab: config.Lab, clients: int) -> None:
    """Up the lab, deploy regdeploy on it, push from one client, pull on another, show the catalog."""
    from .demo import run_demo

    run_demo(lab, clients)
