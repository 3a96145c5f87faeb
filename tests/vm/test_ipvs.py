"""registry_lb_mode=ipvs on a lab of its own (regdeploy-ipvs): three replicas on the lab's Ceph, two
clients (containers), and the load balancers lb1 and lb2 as VMs on the same network (lab/lb_vms.py):
IPVS is in the kernel, and this controller's kernel has none. keepalived moves the shared address
between them and copies every connection to the other (its sync daemon); IPVS forwards each
connection to a replica, which holds the address on its loopback and answers the client itself.

Drills, each with both clients pulling in a loop: the active load balancer's machine powered off costs
no pull (the other load balancer forwards every connection to the same replica: those the holder's
sync daemon sent it, and by hashing each connection's source the same way, those it had not); a
rolling change drains each replica in turn (weight 0, open connections finish) and costs no pull; a
replica's machine powered off costs only the requests in flight on it (no load balancer can send them
again: the connection ends on the replica). Then TLS with accounts, passed through to the replicas,
the load balancer's death and a rolling change again.

The tests run in file order and share the lab; the VMs run under TCG here (minutes, not seconds).
`python -m lab ipvs-check` runs it, alone on the machine: beside another test run the emulated load
balancers' checks time out and take live replicas out (docs/contributing/lab.md).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab import config as lab_config
from lab import hosts as lab_hosts
from tests.access import REPO_ROOT, own_lab, run_deploy
from tests.e2e import test_scale_out as scale_out
from tests.e2e.test_scale_out import inventory_without, push, secure_inventory
from tests.pulls import PullLoops, assert_no_failed_pull, began, ended

IPVS_LAB = lab_config.default_lab("regdeploy-ipvs")
REPLICAS = 3
CLIENTS = 2
REPLICA_NAMES = [f"registry{i}" for i in range(1, REPLICAS + 1)]
# How long before a load balancer's death a connection may have been opened and still not be on the
# other (the sync daemon's batches, flushed every 2 s, and the 3 packets it waits for), in seconds:
# the pulls begun then are counted, and must not fail either.
SYNC_WINDOW = 3.0


@pytest.fixture(scope="module")
def ipvs(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("ipvs")
    with own_lab(request, IPVS_LAB, CLIENTS, work, replicas=REPLICAS, lb_vms=True) as access:
        first = run_deploy(access.inventory)
        assert first.returncode == 0, first.stderr[-4000:]
        yield access, first


def vip_holders(access, lbs=lab_config.LB_HOSTS) -> list[str]:
    return scale_out.vip_holders(access, lbs, IPVS_LAB)


def wait_for_holder(access, lbs=lab_config.LB_HOSTS, limit: float = 30) -> str:
    return scale_out.wait_for_holder(access, lbs, limit, IPVS_LAB)


def weights(access, lb: str) -> dict[str, int]:
    """Each replica's weight in `lb`'s IPVS table for the registry's port (absent: taken out)."""
    port = access.fleet.server.settings.registry_port
    table = access.ssh(lb, "ipvsadm -L -n")
    found = {}
    for name in REPLICA_NAMES:
        address = lab_config.Lab.address(IPVS_LAB, REPLICA_NAMES.index(name))
        match = re.search(rf"-> {re.escape(address)}:{port}\s+Route\s+(\d+)", table)
        if match:
            found[name] = int(match.group(1))
    return found


def wait_for_weights(access, wanted: dict[str, int], limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    for lb in lab_config.LB_HOSTS:
        while (found := weights(access, lb)) != wanted:
            assert time.monotonic() < deadline, f"{lb}: {found}, not {wanted}"
            time.sleep(0.5)


def test_replicas_deploy_behind_ipvs_and_a_second_run_changes_nothing(ipvs, test_image_archive):
    access, first = ipvs
    fleet = access.fleet
    assert fleet.server.settings.ipvs
    # Each replica holds the shared address on its loopback and answers no ARP for it; no client does
    # (its pulls would go to itself), and one load balancer holds it on its network interface.
    for name in REPLICA_NAMES:
        assert f" {IPVS_LAB.vip}/32 " in access.ssh(name, "ip -o -4 addr show dev lo")
        assert access.ssh(name, "sysctl -n net.ipv4.conf.all.arp_ignore net.ipv4.conf.all.arp_announce").split() == \
            ["1", "2"]
    for client in fleet.clients:
        assert IPVS_LAB.vip not in access.ssh(client, "ip -o -4 addr show dev lo")
    wait_for_holder(access)
    # Both load balancers know every replica (the backup is ready to take over), no haproxy runs, and
    # the sync daemon runs: the holder's sends the connections, the other's receives them.
    wait_for_weights(access, dict.fromkeys(REPLICA_NAMES, 1))
    for lb in lab_config.LB_HOSTS:
        assert access.ssh(lb, "systemctl is-active haproxy || true") != "active"
        assert "sync daemon (mcast=eth0, syncid=" in access.ssh(lb, "ipvsadm -L --daemon")
    again = run_deploy(access.inventory)
    assert again.returncode == 0 and again.changed_hosts() == set(), again.changes()
    reference = f"{fleet.registry_address}/team/busybox:1"
    digest = push(access, fleet.clients[0].name, reference, test_image_archive)
    assert digest in access.ssh(fleet.clients[1].name, f"docker pull {reference}")


def test_the_active_load_balancers_death_costs_no_pull(ipvs):
    access, _ = ipvs
    kill_the_active_load_balancer(access, access.inventory, f"{access.fleet.registry_address}/team/busybox:1")


def kill_the_active_load_balancer(access, inventory: Path, reference: str) -> None:
    """Power off the holder of the address with every client pulling `reference`: the other takes the
    address, and every connection goes on to the same replica, those the holder's sync daemon sent it
    and those it had not sent yet. No pull fails. The dead one comes back as a backup; `inventory` then
    changes nothing."""
    active = wait_for_holder(access)
    other = next(lb for lb in lab_config.LB_HOSTS if lb != active)
    try:
        with PullLoops(access, reference) as loops:
            time.sleep(3)
            # The backup knows the clients' connections already: the holder's sync daemon sent them.
            synced = access.ssh(other, "ipvsadm -L -n -c")
            assert re.search(rf"{re.escape(IPVS_LAB.vip)}:\d+\s+\S+:\d+", synced), synced
            killed_at = time.time()
            lab_hosts.power_off(IPVS_LAB, active)
            assert wait_for_holder(access, lbs=(other,)) == other
            moved_at = time.time()
            loops.settle(pulls=4, limit=120)
    finally:  # the next tests need both
        lab_hosts.power_on(IPVS_LAB, active)
    outcomes = loops.outcomes()
    # The holder's sync daemon sends a connection once it saw 3 of its packets, in batches it flushes at
    # least every 2 s (the kernel's IPVS_SYNC_FLUSH_TIME): a connection opened less than that before the
    # cut may be unknown to the other. It still goes on: the other forwards any packet of it (sloppy_tcp)
    # to the replica the holder chose (both hash its source). So no pull fails, not even those begun in
    # that window, and every client goes on pulling after the address moved.
    assert_no_failed_pull(outcomes, at_least=3)
    late = sum(1 for lines in outcomes.values() for line in lines if killed_at - SYNC_WINDOW < began(line) < killed_at)
    after = {client: sum(1 for line in lines if began(line) > moved_at) for client, lines in outcomes.items()}
    assert all(count >= 3 for count in after.values()), after
    longest = max(ended(line) - began(line) for lines in outcomes.values() for line in lines)
    print(f"the address moved to {other} {moved_at - killed_at:.1f} s after {active} was powered off; no failed pull "
          f"of { {c: len(lines) for c, lines in outcomes.items()} } ({late} begun less than {SYNC_WINDOW} s before "
          f"the cut); the longest took {longest:.1f} s")
    wait_for_weights(access, dict.fromkeys(REPLICA_NAMES, 1))
    time.sleep(5)  # a few VRRP rounds: it stays a backup
    assert vip_holders(access) == [other]
    again = run_deploy(inventory)
    assert again.returncode == 0 and again.changed_hosts() == set(), again.changes()


def test_a_rolling_change_drains_each_replica_in_turn_and_costs_no_pull(ipvs):
    access, _ = ipvs
    roll_every_replica(access, access.inventory, f"{access.fleet.registry_address}/team/busybox:1")


def roll_every_replica(access, inventory: Path, reference: str) -> None:
    """A change to every replica's config with every client pulling `reference`: each replica in turn
    refuses the load balancers' checks (weight 0 on each), is replaced, and comes back at weight 1
    before the next; no pull fails, and nothing of the drain is left on a replica."""
    fleet = access.fleet
    ids = {name: access.ssh(name, "docker inspect -f '{{.Id}}' registry") for name in REPLICA_NAMES}
    # Each load balancer's journal from here on (its own cursor: the VMs' clocks are their own).
    cursors = {lb: access.ssh(lb, "journalctl -u keepalived -n 1 --show-cursor -o cat").rpartition("cursor: ")[2]
               for lb in lab_config.LB_HOSTS}
    assert all(cursors.values()), cursors
    with PullLoops(access, reference) as loops:
        time.sleep(2)
        changed = run_deploy(inventory, "--data", "registry_allow_delete=true")
        time.sleep(2)
    assert changed.returncode == 0, changed.stderr[-4000:]
    assert_no_failed_pull(loops.outcomes(), at_least=5)
    assert all(access.ssh(name, "docker inspect -f '{{.Id}}' registry") != ids[name] for name in REPLICA_NAMES)
    # Each load balancer's own log: every replica went to weight 0 (it refused their checks) and back to
    # 1, one at a time, and none was taken out.
    for lb in lab_config.LB_HOSTS:
        journal = access.ssh(lb, f"journalctl -u keepalived --after-cursor {cursors[lb]!r} -o cat")
        events = re.findall(r"(Changing weight from (\d) to (\d)|Removing service) .*?\[([0-9.]+)\]:tcp:(\d+)", journal)
        port = str(fleet.server.settings.registry_port)
        changes = [(int(old), int(new), address) for text, old, new, address, at in events if at == port and old]
        assert not [e for e in events if e[0] == "Removing service"], (lb, journal)
        assert len(changes) == 2 * REPLICAS, (lb, journal)
        for down, up in zip(changes[::2], changes[1::2]):
            assert down[:2] == (1, 0) and up[:2] == (0, 1) and down[2] == up[2], changes
        assert len({address for _, _, address in changes}) == REPLICAS
    for name in REPLICA_NAMES:  # neither the drain's REJECT nor the rules counting the checks back
        rules = access.ssh(name, "iptables -S DOCKER-USER; iptables -S INPUT")
        assert not re.search("REJECT|regdeploy-lb-check", rules), (name, rules)
    back = run_deploy(inventory)  # registry_allow_delete back as the inventory says
    assert back.returncode == 0, back.stderr[-4000:]


def test_a_dead_replica_costs_only_the_requests_in_flight_on_it(ipvs):
    """A replica's machine powered off: the load balancers take it out after two failed checks, and its
    connections end at their next packet (a reset from the load balancer), so a client learns at once.
    A request in flight on it is lost with it (the connection ends on the replica: nothing can send it
    again, and Docker does not retry a manifest request on a new connection): only pulls begun before
    it was taken out may fail; every pull begun after succeeds."""
    access, _ = ipvs
    victim = "registry2"
    try:
        with PullLoops(access, f"{access.fleet.registry_address}/team/busybox:1") as loops:
            time.sleep(3)
            killed_at = time.time()
            lab_hosts.power_off(IPVS_LAB, victim)
            wait_for_weights(access, {name: 1 for name in REPLICA_NAMES if name != victim}, limit=30)
            out_at = time.time()
            loops.settle(pulls=4, limit=120)
    finally:
        lab_hosts.power_on(IPVS_LAB, victim)
    outcomes = loops.outcomes()
    failed = {client: [line for line in lines if not line.startswith("ok ")] for client, lines in outcomes.items()}
    for client, lines in failed.items():
        for line in lines:
            assert began(line) < out_at, (client, line, killed_at, out_at)
    after = {client: sum(1 for line in lines if line.startswith("ok ") and began(line) > out_at)
             for client, lines in outcomes.items()}
    assert all(count >= 3 for count in after.values()), after
    print(f"{victim} was taken out {out_at - killed_at:.1f} s after its power cut; failed pulls (all begun "
          f"before): { {c: len(f) for c, f in failed.items()} } of { {c: len(lines) for c, lines in outcomes.items()} }")
    wait_for_weights(access, dict.fromkeys(REPLICA_NAMES, 1), limit=120)


def test_a_replica_taken_out_is_drained_first_and_costs_no_pull(ipvs, tmp_path):
    """registry3 moved from registry_servers to the clients, with every client pulling: before the load
    balancers drop it from IPVS (which would end its connections), it refuses their checks and its open
    connections finish; then its registry stops and stays, and it gives up the shared address. Put back,
    it serves again."""
    access, _ = ipvs
    reference = f"{access.fleet.registry_address}/team/busybox:1"
    smaller = inventory_without(access.inventory, tmp_path / "two.py", "registry3")
    with PullLoops(access, reference) as loops:
        time.sleep(3)
        removed = run_deploy(smaller)
        time.sleep(3)
    assert removed.returncode == 0, removed.stderr[-3000:]
    assert_no_failed_pull(loops.outcomes(), at_least=3)
    assert "Drain the former replica on the load balancers" in removed.stderr
    assert access.ssh("registry3", "docker inspect -f '{{.State.Running}} {{.HostConfig.RestartPolicy.Name}}' registry"
                      ) == "false no"
    assert IPVS_LAB.vip not in access.ssh("registry3", "ip -o -4 addr show dev lo")
    assert "REJECT" not in access.ssh("registry3", "iptables -S INPUT; iptables -S DOCKER-USER")
    wait_for_weights(access, {"registry1": 1, "registry2": 1})
    again = run_deploy(smaller)
    assert again.returncode == 0 and again.changed_hosts() == set(), again.changes()
    back = run_deploy(access.inventory)
    assert back.returncode == 0, back.stderr[-3000:]
    wait_for_weights(access, dict.fromkeys(REPLICA_NAMES, 1))


def test_tls_with_accounts_passes_through_and_survives_the_load_balancers_death(ipvs, tmp_path, test_image_archive):
    """TLS ends at the replicas (IPVS passes TCP through, the token service's port too); the verify
    suite passes through the load balancers, and the active one's death and a rolling change cost no
    pull here either (the checks of a TLS replica are TCP connections, drained the same way)."""
    access, _ = ipvs
    pusher, puller = (c.name for c in access.fleet.clients[:2])
    secure = secure_inventory(access, tmp_path, tmp_path / "passwords", "Ipvs")
    first = run_deploy(secure)
    assert first.returncode == 0, first.stderr[:first.stderr.rfind('{"plan"')][-6000:]
    again = run_deploy(secure)
    assert again.returncode == 0 and again.changed_hosts() == set(), again.changes()
    token_port = access.fleet.server.settings.registry_token_port
    for lb in lab_config.LB_HOSTS:
        assert f"{IPVS_LAB.vip}:{token_port}" in access.ssh(lb, "ipvsadm -L -n")
    reference = f"{access.fleet.registry_address}/team/secure:1"
    push(access, pusher, reference, test_image_archive)
    access.ssh(puller, f"docker pull -q {reference} >/dev/null")
    denied = access.ssh(puller, f"docker tag {reference} {reference}-nodes && docker push {reference}-nodes 2>&1",
                        check=False)
    assert "denied" in denied, denied
    kill_the_active_load_balancer(access, secure, reference)
    roll_every_replica(access, secure, reference)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/verify", f"--inventory={secure}",
         f"--test-image-archive={test_image_archive}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:]
