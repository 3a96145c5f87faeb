"""regdeploy as a stranger adopts it, on a lab of its own (regdeploy-install): a wheel built from this
checkout, installed into a fresh venv outside it, deploys from another directory with
`pyinfra -y INVENTORY regdeploy.deploys.registry`. The inventory is a whole estate's: a registry
server, a client, and a `databases` host that regdeploy must leave byte for byte as it was.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab import config as lab_config
import regdeploy
from regdeploy import managed
from tests.access import own_lab, run_deploy
from tests.packaging import build_wheel

INSTALL_LAB = lab_config.default_lab("regdeploy-install")
DEPLOY = "regdeploy.deploys.registry"
# Everything a deploy could leave on a host: packages, every file's type, mode, owner, size and
# mtime (outside the kernel's and the logs' trees, which an SSH login writes to), /etc's contents,
# and systemd's units with their states.
SNAPSHOT = r"""set -e
dpkg-query -W -f='${Package} ${Version} ${db:Status-Abbrev}\n'
find / -xdev \( -path /proc -o -path /sys -o -path /dev -o -path /run -o -path /tmp -o -path /var/tmp \
    -o -path /var/log \) -prune -o -printf '%p %y %m %U %G %s %T@\n' | LC_ALL=C sort
find /etc -xdev -type f -exec sha256sum {} + | LC_ALL=C sort -k2
systemctl list-units --all --no-legend --plain | awk '{print $1, $2, $3, $4}' | LC_ALL=C sort
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv, outside the checkout, with only the wheel and its verify extra (and what they
    depend on, from PyPI)."""
    work = tmp_path_factory.mktemp("install")
    wheel = build_wheel(work)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check", f"{wheel}[verify]"],
                   check=True, capture_output=True, timeout=900)
    return venv


@pytest.fixture(scope="module")
def estate(request, tmp_path_factory):
    """The lab's registry and client1 in regdeploy's groups, client2 as `db1` in `databases`; the
    inventory and the deploy's working directory are away from the checkout."""
    work = tmp_path_factory.mktemp("estate")
    with own_lab(request, INSTALL_LAB, 2, work) as access:
        def entry(name: str, lab_name: str) -> str:
            return f"    ({name!r}, {dict(access._inventory_host(lab_name).data)!r}),\n"

        inventory = work / "inventory.py"
        inventory.write_text(f"registry_servers = [\n{entry('registry', 'registry')}]\n"
                             f"docker_clients = [\n{entry('client1', 'client1')}]\n"
                             f"# Another team's hosts, in the same inventory.\n"
                             f"databases = [\n{entry('db1', 'client2')}]\n")
        yield access, inventory


def test_the_installed_package_has_regdeploy_and_nothing_of_the_checkout(installed, tmp_path):
    python = str(installed / "bin/python")
    where = subprocess.run([python, "-c", "import regdeploy, regdeploy.deploys; print(regdeploy.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(installed)), where
    for name in ("tasks", "lab"):
        found = subprocess.run([python, "-c", f"import {name}"], cwd=tmp_path, capture_output=True, text=True)
        assert found.returncode != 0 and "No module named" in found.stderr, (name, found.stderr)
    version = subprocess.run([str(installed / "bin/regdeploy"), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("regdeploy "), version
    assert version.stdout.split()[1] == regdeploy.__version__


def test_an_installed_regdeploy_deploys_and_leaves_other_hosts_byte_for_byte(installed, estate, tmp_path):
    access, inventory = estate
    pyinfra = installed / "bin/pyinfra"
    # Twice before: what the host changes by itself (a timer, a login) would show as a difference.
    before = [access.ssh("client2", SNAPSHOT) for _ in range(2)]
    assert before[0] == before[1], "the snapshot moves by itself; exclude what moved"
    client_before = access.ssh("client1", SNAPSHOT)

    cold = run_deploy(inventory, pyinfra=pyinfra, deploy=DEPLOY, cwd=tmp_path)
    assert cold.returncode == 0, cold.stderr[-4000:]
    assert ("regdeploy leaves alone 1 inventory host in none of its groups (registry_servers, docker_clients, "
            "registry_lb): db1") in cold.stderr
    assert cold.changed_hosts() == {"registry", "client1"}
    # No operation, changed or not, ran on db1.
    assert not [op["name"] for op in cold.output["results"]["operations"]
                if "db1" in op["success"] + op["error"] + op["no_change"]]

    # The snapshot can tell: the client it provisioned is not what it was.
    assert access.ssh("client1", SNAPSHOT) != client_before
    after = access.ssh("client2", SNAPSHOT)
    assert after == before[1], "db1 changed: " + "\n".join(
        sorted(set(after.splitlines()) ^ set(before[1].splitlines()))[:40])
    assert access.ssh("client2", "command -v docker dockerd; ls /etc/docker 2>&1 || true") \
        == "ls: cannot access '/etc/docker': No such file or directory"

    second = run_deploy(inventory, pyinfra=pyinfra, deploy=DEPLOY, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-4000:]
    assert second.totals["success"] == 0, second.changes()
    assert access.ssh("client2", SNAPSHOT) == before[1]

    # Every host it manages records the version; a --dry run says which version deployed a host last.
    for name in ("registry", "client1"):
        assert access.ssh(name, f"cat {managed.PATH}") == f"regdeploy {regdeploy.__version__}"
    access.ssh("client1", f"echo 'regdeploy 0.1.0' > {managed.PATH}")
    dry = run_deploy(inventory, "--dry", pyinfra=pyinfra, deploy=DEPLOY, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr[-4000:]
    assert (f"Will record: managed by regdeploy 0.1.0: this run records regdeploy {regdeploy.__version__}"
            in dry.host_log("client1")), dry.host_log("client1")
    # A host whose record is current has nothing to record (its `managed by` line shows with -v).
    assert not [line for line in dry.host_log("registry") if line.startswith("Will record")], dry.host_log("registry")
    rerecord = run_deploy(inventory, pyinfra=pyinfra, deploy=DEPLOY, cwd=tmp_path)
    assert rerecord.changes() == {("Record regdeploy's version", "client1")}, rerecord.changes()

    # The verify suite, from the installed package (regdeploy.verify), against the same inventory:
    # every check passes on the two hosts of regdeploy's groups, and none reaches db1.
    verify = subprocess.run([str(installed / "bin/regdeploy"), "-i", str(inventory), "verify",
                             f"--test-image-archive={INSTALL_LAB.test_image_archive}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert verify.returncode == 0, verify.stdout[-4000:] + verify.stderr[-2000:]
    assert " passed" in verify.stdout and " failed" not in verify.stdout, verify.stdout[-2000:]
    # The suite it ran is the installed one, not a checkout's.
    assert "site-packages/regdeploy/verify/test_round_trip.py" in verify.stdout, verify.stdout[:2000]
    assert "db1" not in verify.stdout
    assert access.ssh("client2", SNAPSHOT) == before[1]
