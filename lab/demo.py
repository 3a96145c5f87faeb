"""`python -m lab demo`: the manual page, done by regdeploy on the lab, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click

from regdeploy.inventory import load_fleet
from regdeploy.registry_api import RegistryClient, base_url

from . import config, hosts
from . import ssh as lab_ssh

REPO_ROOT = Path(__file__).resolve().parent.parent


def _say(text: str) -> None:
    click.secho(f"\n== {text}", bold=True)


def _on(lab: config.Lab, hostname: str, command: str, stdin=None) -> None:
    click.echo(f"[{hostname}] $ {command}")
    subprocess.run(lab_ssh.ssh_command(lab, hostname, command), stdin=stdin, check=True)


def run_demo(lab: config.Lab, clients: int) -> None:
    _say(f"Start the lab: 1 registry server + {clients} clients")
    hosts.up(lab, clients=clients)

    _say(f"Deploy: pyinfra {lab.inventory_path} deploy.py")
    pyinfra = str(Path(sys.executable).parent / "pyinfra")
    subprocess.run([pyinfra, "-y", str(lab.inventory_path), "deploy.py"], cwd=REPO_ROOT, check=True)

    _say("Deploy again: a converged fleet reports no change")
    rerun = subprocess.run([pyinfra, "-y", str(lab.inventory_path), "deploy.py", "--json"], cwd=REPO_ROOT,
                           check=True, capture_output=True, text=True)
    totals = json.loads(rerun.stdout)["results"]["totals"]
    click.echo(f"second run: {totals['success']} operations changed something, {totals['error']} failed")

    fleet = load_fleet(str(lab.inventory_path))
    if len(fleet.clients) < 1:
        click.echo("no clients: nothing to push or pull")
        return
    pusher, puller = fleet.clients[0].name, fleet.clients[-1].name
    target = f"{fleet.registry_address}/demo/busybox:v1"

    _say(f"Push from {pusher}: tag the test image as {target} and push it")
    with open(lab.test_image_archive, "rb") as archive:
        _on(lab, pusher, "docker load -q", stdin=archive)
    _on(lab, pusher, f"docker tag {config.TEST_IMAGE} {target} && docker push {target}")
    _on(lab, pusher, f"docker image rm {target}")

    _say(f"Pull on {puller}")
    _on(lab, puller, f"docker pull {target} && docker run --rm {target} echo hello from the registry")

    _say(f"What the registry holds (GET /v2/_catalog and /v2/<name>/tags/list on {fleet.registry_api_address})")
    registry = RegistryClient(base_url(fleet.registry_api_address))
    for repository in registry.catalog():
        click.echo(f"{repository:30} {' '.join(registry.tags(repository))}")

    _say("Done. Try: .venv/bin/regdeploy --inventory "
         f"{lab.inventory_path} catalog   |   python -m lab ssh {puller}   |   python -m lab down")
