"""Reach the hosts of any inventory from the tests: one ssh_config, testinfra hosts, pyinfra runs."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from lab import config as lab_config
from lab import hosts as lab_hosts

from regdeploy.inventory import InventoryHost
from tests.verify import access as verify_access

REPO_ROOT = Path(__file__).resolve().parent.parent
REGDEPLOY = str(Path(sys.executable).parent / "regdeploy")


class Access(verify_access.Access):
    """The verify suite's access, and what the lab's tests add to it."""

    def wait_until_serving(self, h: InventoryHost | str, port: int = 5000, limit: float = 60) -> float:
        """Seconds until the registry on `h` answers GET /v2/ over its loopback; fails after `limit`."""
        start = time.monotonic()
        while time.monotonic() - start < limit:
            if self.ssh(h, f"curl -fsS -o /dev/null http://127.0.0.1:{port}/v2/ && echo up", check=False) == "up":
                return time.monotonic() - start
            time.sleep(0.1)
        raise AssertionError(f"the registry on {h if isinstance(h, str) else h.name} did not answer within {limit} s")

    def push_unique(self, client: str, reference: str) -> None:
        """An image of its own (300 kB of random bytes on the test image), pushed from `client` as
        `reference`; one push a second, so that tags' push times are apart."""
        self.ssh(client, f"docker rm -f mk >/dev/null 2>&1; docker run --name mk {lab_config.TEST_IMAGE} sh -c "
                         f"'head -c 300000 /dev/urandom > /u' && docker commit mk {reference} >/dev/null && "
                         f"docker rm mk >/dev/null && docker push -q {reference} >/dev/null")
        time.sleep(1.1)

    def inventory_with(self, path: Path, per_host: dict[str, dict] | None = None, **data) -> Path:
        """This inventory's hosts (every replica and load balancer too), connected to as here, with
        `data` on top of every host's (and `per_host[name]` on top of that): the same fleet in another
        mode (e.g. registry_tls)."""
        def entry(h: InventoryHost) -> str:
            own = (per_host or {}).get(h.name, {})
            return f"    ({h.name!r}, {{**{dict(h.data)!r}, **{data!r}, **{own!r}}}),\n"

        servers = self.fleet.servers or (self.fleet.server,)
        lb = f"registry_lb = [\n{''.join(entry(h) for h in self.fleet.lbs)}]\n" if self.fleet.lbs else ""
        path.write_text(f"registry_servers = [\n{''.join(entry(s) for s in servers)}]\n{lb}"
                        f"docker_clients = [\n{''.join(entry(c) for c in self.fleet.clients)}]\n")
        return path

    def single_server_inventory(self, hostname: str, path: Path, **data) -> Path:
        """An inventory at `path` whose only host is this inventory's `hostname`, as the registry
        server, connected to as here, with `data` on top (e.g. the registry image archive)."""
        h = next(h for h in self.fleet.hosts if h.name == hostname)
        ssh = {key: value for key, value in h.data.items() if key.startswith("ssh_")}
        path.write_text(f"registry_servers = [({hostname!r}, {{**{ssh!r}, **{data!r}}})]\ndocker_clients = []\n")
        return path


@dataclass
class DeployResult:
    returncode: int
    output: dict | None
    stderr: str

    @property
    def totals(self) -> dict:
        assert self.output is not None, f"pyinfra printed no JSON:\n{self.stderr[-3000:]}"
        return self.output["results"]["totals"]

    # An operation can carry a different name on each host (pyinfra keeps them all in `names` and
    # shows any one of them as `name`): these helpers list an operation under every name it has.

    def changed_hosts(self) -> set[str]:
        """Hosts on which at least one operation reported a change."""
        return {h for op in self.output["results"]["operations"] for h in op["success"]}

    def changed_operations(self, host: str) -> list[str]:
        return [name for op in self.output["results"]["operations"] if host in op["success"] for name in op["names"]]

    def changes(self) -> set[tuple[str, str]]:
        """(operation, host) for every operation that changed a host."""
        return {(name, h) for op in self.output["results"]["operations"] for h in op["success"] for name in op["names"]}

    def planned(self) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
        """From a --dry run: (operation, host) that will change, and those that may (conditional)."""
        plan = self.output["plan"]
        return ({(name, h) for op in plan for h in op["hosts_with_change"] for name in op["names"]},
                {(name, h) for op in plan for h in op["hosts_with_conditional_change"] for name in op["names"]})

    def by_hash(self, key: str) -> set[tuple[str, str]]:
        """(op hash, host) for the plan's `key` (hosts_with_change...) or the results' `success`."""
        ops = self.output["plan"] if key.startswith("hosts_") else self.output["results"]["operations"]
        return {(op["op_hash"], h) for op in ops for h in op[key]}

    def names_of(self, op_hash: str) -> list[str]:
        ops = (self.output.get("plan") or []) + ((self.output.get("results") or {}).get("operations") or [])
        return next(op["names"] for op in ops if op["op_hash"] == op_hash)

    def host_log(self, host: str) -> list[str]:
        """What pyinfra printed for `host` (its `[host]` lines), prefix, padding and indent removed."""
        prefix = re.compile(rf"^\s*\[{re.escape(host)}\]\s+")
        return [prefix.sub("", line).rstrip() for line in self.stderr.splitlines() if prefix.match(line)]


def assert_did_what_dry_said(dry: DeployResult, real: DeployResult) -> None:
    """The real run changed exactly what --dry said it would (conditional steps: at most those)."""
    assert dry.returncode == 0 and real.returncode == 0, (dry.stderr[-2000:], real.stderr[-2000:])
    # Compared by operation hash (the same code gives the same hashes in both runs), not by name.
    will, may = dry.by_hash("hosts_with_change"), dry.by_hash("hosts_with_conditional_change")
    done = real.by_hash("success")
    missing = {(tuple(dry.names_of(op)), h) for op, h in will - done}
    assert not missing, f"--dry said these would change, the run did not: {missing}"
    extra = {(tuple(real.names_of(op)), h) for op, h in done - (will | may)}
    assert not extra, f"the run changed what --dry did not say: {extra}"


def regdeploy_json(inventory: Path, *arguments: str, timeout: float = 600) -> dict:
    """`regdeploy -i INVENTORY ARGUMENTS --json`, which must succeed: its report (its messages printed)."""
    result = subprocess.run([REGDEPLOY, "-i", str(inventory), *arguments, "--json"], capture_output=True, text=True,
                            timeout=timeout)
    print(result.stderr)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


def run_deploy(inventory: Path, *extra: str, env: dict[str, str] | None = None, pyinfra: Path | None = None,
               deploy: str = "deploy.py", cwd: Path = REPO_ROOT) -> DeployResult:
    """`pyinfra -y INVENTORY deploy.py --json [extra]`, as an operator runs it, from the repo root;
    `env` is added to the environment (e.g. REGDEPLOY_PASSWORD_<USER>). An installed regdeploy:
    another venv's `pyinfra`, `deploy="regdeploy.deploys.registry"` and any `cwd`.

    With --dry, -y is left out: pyinfra 3.10 skips change detection under -y, so the plan would be empty.
    """
    yes = [] if "--dry" in extra else ["-y"]
    result = subprocess.run(
        [str(pyinfra or Path(sys.executable).parent / "pyinfra"), *yes, str(inventory), deploy, "--json", *extra],
        cwd=cwd, capture_output=True, text=True, timeout=1200, env={**os.environ, **(env or {})},
    )
    try:
        output = json.loads(result.stdout) if result.stdout.strip() else None
    except json.JSONDecodeError:
        output = None
    return DeployResult(result.returncode, output, result.stderr + result.stdout)


@contextlib.contextmanager
def own_lab(request, lab: lab_config.Lab, clients: int, workdir: Path, replicas: int = 0,
            os_spec: str = "", lb_vms: bool = False) -> Iterator[Access]:
    """A lab of a test module's own (adoption, drills, docker-ce), created fresh for it and removed
    after it unless --keep-lab; skipped when --inventory points at the user's hosts. `replicas`:
    registry replicas on the lab's Ceph store behind a load balancer (lab.hosts.up); `lb_vms`: the load
    balancers are VMs with IPVS (lab/lb_vms.py)."""
    if request.config.getoption("--inventory"):
        pytest.skip("lab-only test: --inventory points at your own hosts")
    lab_hosts.down(lab)
    lab_hosts.up(lab, clients=clients, replicas=replicas, os_spec=os_spec, lb_vms=lb_vms)
    try:
        yield Access.load(lab.inventory_path, workdir)
    finally:
        if not request.config.getoption("--keep-lab"):
            lab_hosts.down(lab)
