"""Several registry replicas on shared object storage behind two load balancers, on a lab of its own
(regdeploy-scale): three replicas on the lab's one-node Ceph (RGW, host `store`), haproxy on `lb1` and
`lb2` sharing the lab's virtual address (keepalived; every host knows it as `registry`), three clients.
Pushes go through the load balancers and every host pulls them; a replica whose machine dies costs no
pull, nor does the active load balancer's; a load balancer stopped, disabled or edited by hand is put
back; a rolling change drains and replaces the replicas one at a time with pulls going on, and every
image and digest survives all replicas being recreated; prune and gc make the replicas read-only one at
a time and cost no pull. Last, TLS with accounts with rights through the load balancers (TLS ends
there): a dead replica, a replica taken out and back, a password rotation, a CA rotation and a
certificate rotation, each with every client pulling in a loop, cost no pull, and the active load
balancer's death only the requests in flight.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from lab import config as lab_config
from lab import hosts as lab_hosts
from lab import ssh as lab_ssh
from lab.docker import docker
from regdeploy import credentials, load_balancer, retention
from regdeploy.inventory import load_fleet
from regdeploy.registry_api import RegistryClient, base_url
from regdeploy.settings import archive_sha256
from tests.access import REPO_ROOT, own_lab, regdeploy_json, run_deploy
from tests.pulls import PullLoops, assert_no_failed_pull, assert_pulled_throughout, began, ended

SCALE_LAB = lab_config.default_lab("regdeploy-scale")
REPLICAS = 3
CLIENTS = 3  # three hosts pulling through each drill
@pytest.fixture(scope="module")
def scale(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("scale")
    with own_lab(request, SCALE_LAB, CLIENTS, work, replicas=REPLICAS) as access:
        first = run_deploy(access.inventory)
        assert first.returncode == 0, first.stderr[-4000:]
        yield access, first


def registry_client(access) -> RegistryClient:
    """The registry API as clients reach it: through the load balancer."""
    return RegistryClient(base_url(access.fleet.registry_api_address))


def push(access, client: str, reference: str, archive: Path) -> str:
    access.load_image_archive(client, archive)
    output = access.ssh(client, f"docker tag {lab_config.TEST_IMAGE} {reference} && docker push {reference}")
    return re.findall(r"sha256:[0-9a-f]{64}", output)[-1]


def lb_status(access, lb) -> dict[str, str]:
    """Each replica's state on the load balancer `lb`'s status page."""
    settings = access.fleet.lb.settings
    page = access.ssh(lb, f"curl -fsS 'http://127.0.0.1:{settings.registry_lb_stats_port}/stats;csv'")
    return {row.split(",")[1]: row.split(",")[17] for row in page.splitlines()
            if row.startswith(load_balancer.LB_BACKEND + ",") and row.split(",")[1] not in ("BACKEND", "FRONTEND")}


def wait_for_lb(access, wanted: dict[str, str], limit: float = 90, lbs=lab_config.LB_HOSTS) -> None:
    """Until every load balancer in `lbs` reports `wanted`."""
    deadline = time.monotonic() + limit
    for lb in lbs:
        while (status := lb_status(access, lb)) != wanted:
            assert time.monotonic() < deadline, f"{lb} reports {status}, not {wanted}"
            time.sleep(0.5)


def vip_holders(access, lbs=lab_config.LB_HOSTS, lab=SCALE_LAB) -> list[str]:
    """The load balancers that hold the lab's virtual address now."""
    return [lb for lb in lbs if f" {lab.vip}/" in access.ssh(lb, "ip -o -4 addr show")]


def wait_for_holder(access, lbs=lab_config.LB_HOSTS, limit: float = 30, lab=SCALE_LAB) -> str:
    deadline = time.monotonic() + limit
    while len(holders := vip_holders(access, lbs, lab)) != 1:
        assert time.monotonic() < deadline, f"{holders} hold {lab.vip}, not exactly one load balancer"
        time.sleep(0.2)
    return holders[0]


def test_replicas_deploy_behind_the_load_balancer_and_a_second_run_changes_nothing(scale):
    access, first = scale
    fleet = access.fleet
    assert [s.name for s in fleet.servers] == [f"registry{i}" for i in range(1, REPLICAS + 1)]
    assert fleet.registry_address == f"{lab_config.VIP_NAME}:5000"
    # The load balancers run haproxy and keepalived, not Docker; one of them holds the address.
    assert not set(lab_config.LB_HOSTS) & {h for op in first.output["results"]["operations"] if "Docker" in op["name"]
                                           for h in op["success"]}
    for lb in lab_config.LB_HOSTS:
        assert access.ssh(lb, "systemctl is-active haproxy keepalived; systemctl is-enabled haproxy keepalived"
                          ).split() == ["active", "active", "enabled", "enabled"], lb
    assert wait_for_holder(access) in lab_config.LB_HOSTS
    # Neither the S3 secret nor the shared http.secret in pyinfra's output.
    for secret_file in (SCALE_LAB.s3_secret_path, SCALE_LAB.http_secret_path):
        assert secret_file.read_text().strip() not in first.stderr
    again = run_deploy(access.inventory)
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.changed_hosts() == set(), again.changes()
    wait_for_lb(access, {f"registry{i}": "UP" for i in range(1, REPLICAS + 1)})


def test_a_push_through_the_load_balancer_is_pulled_on_every_host(scale, test_image_archive):
    access, _ = scale
    reference = f"{access.fleet.registry_address}/team/busybox:1"
    digest = push(access, access.fleet.clients[0].name, reference, test_image_archive)
    for host in access.fleet.hosts:
        if host.settings.uses_registry:
            assert digest in access.ssh(host, f"docker pull -q {reference} >/dev/null && docker image inspect -f "
                                              f"'{{{{range .RepoDigests}}}}{{{{.}}}} {{{{end}}}}' {reference}"), host.name
    # The bytes are in the bucket, not on any replica's disk.
    for server in access.fleet.servers:
        assert access.ssh(server, "ls -A /var/lib/registry") == "", server.name
    assert registry_client(access).manifests()[("team/busybox", "1")] == digest


def test_the_verify_suite_passes_against_the_replicas(scale, test_image_archive):
    access, _ = scale
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/verify",
                             f"--inventory={access.inventory}", f"--test-image-archive={test_image_archive}"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:]
    assert re.search(r"(\d+) passed", result.stdout) and " skipped" not in result.stdout, result.stdout[-1500:]


def kill_a_replica_while_every_client_pulls(access, reference: str, victim: str) -> None:
    """The whole machine goes, at once, as at a power cut (no graceful stop; its address answers nothing,
    not even a reset), with every client pulling until 8 s after the load balancers mark it DOWN: no pull
    may fail, and none hangs (PullLoops waits for each to end). Then it restarts, and its registry comes
    back by itself (restart policy, nothing on its disk to lose)."""
    try:
        with PullLoops(access, reference) as loops:
            time.sleep(3)
            lab_hosts.power_off(SCALE_LAB, victim)
            wait_for_lb(access, {f"registry{i}": "DOWN" if f"registry{i}" == victim else "UP"
                                 for i in range(1, REPLICAS + 1)}, limit=30)
            time.sleep(8)
    finally:  # the next tests need it
        docker("start", SCALE_LAB.container_name(victim))
        lab_ssh.wait_for_ssh(SCALE_LAB, [victim])
    assert_no_failed_pull(loops.outcomes(), at_least=3)


def test_a_dead_replica_costs_no_pull(scale, test_image_archive):
    access, _ = scale
    reference = f"{access.fleet.registry_address}/team/busybox:1"
    if ("team/busybox", "1") not in registry_client(access).manifests():
        push(access, access.fleet.clients[0].name, reference, test_image_archive)
    kill_a_replica_while_every_client_pulls(access, reference, "registry2")
    wait_for_lb(access, {f"registry{i}": "UP" for i in range(1, REPLICAS + 1)})


def test_the_active_load_balancers_death_costs_only_the_requests_in_flight(scale, test_image_archive):
    """The machine holding the address dies at once, as at a power cut: the other load balancer takes
    the address (VRRP, about 3.2 s after its last advertisement), new connections meanwhile are retried
    by the clients' TCP into it. Only a request in flight on the dead machine's connection can fail: a
    pull begun before the address moved. The dead one comes back as a backup, without taking the address
    back."""
    access, _ = scale
    reference = f"{access.fleet.registry_address}/team/busybox:1"
    if ("team/busybox", "1") not in registry_client(access).manifests():
        push(access, access.fleet.clients[0].name, reference, test_image_archive)
    kill_the_active_load_balancer(access, access.inventory, reference)


def kill_the_active_load_balancer(access, inventory: Path, reference: str) -> None:
    """The drill of the test above, with every client pulling `reference`; `inventory` must then
    change nothing."""
    active = wait_for_holder(access)
    other = next(lb for lb in lab_config.LB_HOSTS if lb != active)
    try:
        with PullLoops(access, reference) as loops:
            time.sleep(3)
            killed_at = time.time()  # the lab's hosts share this machine's clock
            lab_hosts.power_off(SCALE_LAB, active)
            assert wait_for_holder(access, lbs=(other,)) == other
            moved_at = time.time()
            # Until every client has pulled 4 more times: a pull in flight on the dead machine may wait
            # about 30 s for its end.
            loops.settle(pulls=4, limit=120)
    finally:  # the next tests need both
        docker("start", SCALE_LAB.container_name(active))
        lab_ssh.wait_for_ssh(SCALE_LAB, [active])
    outcomes = loops.outcomes()
    # A request in flight on the dead machine's connection is lost with it: no load balancer can send it
    # again, and Docker does not retry a manifest request on a new connection (it does a layer's). The
    # client learns it only when its TCP next sends on it (Docker's keepalive, after 30 s) and the new
    # holder resets it, or when its own timeout ends the wait (15 s for a token). So only a pull begun
    # before the address moved can fail (a reset, an EOF, that timeout); every
    # one begun after it succeeds, through the other load balancer (new connections wait for it in
    # TCP's retries).
    failed = {client: [line for line in lines if not line.startswith("ok ")] for client, lines in outcomes.items()}
    for client, lines in failed.items():
        for line in lines:
            assert began(line) < moved_at, (client, line, killed_at, moved_at)
            assert any(said in line for said in ("EOF", "reset", "Client.Timeout exceeded")), (client, line)
    after = {client: sum(1 for line in lines if line.startswith("ok ") and began(line) > moved_at)
             for client, lines in outcomes.items()}
    assert all(count >= 3 for count in after.values()), after
    longest = max(ended(line) - began(line) for lines in outcomes.values() for line in lines)
    print(f"the address moved to {other} {moved_at - killed_at:.1f} s after {active} was powered off; failed "
          f"pulls (all begun before that): { {c: len(f) for c, f in failed.items()} } of "
          f"{ {c: len(lines) for c, lines in outcomes.items()} }; the longest pull took {longest:.1f} s")
    wait_for_lb(access, {f"registry{i}": "UP" for i in range(1, REPLICAS + 1)})
    time.sleep(5)  # a few VRRP rounds: it stays a backup
    assert vip_holders(access) == [other]
    again = run_deploy(inventory)
    assert again.returncode == 0 and again.changed_hosts() == set(), again.changes()


def test_a_holder_whose_haproxy_stops_gives_the_address_up_and_empties_its_cache(scale):
    """keepalived's check fails once haproxy stops answering: the holder gives the address up, and
    empties its cache as it does (notify_fault), so nothing it cached can answer when it next holds the
    address; the other takes the address and starts with an empty cache too. The deploy restarts
    haproxy on the old holder and changes nothing else."""
    access, _ = scale
    holder = wait_for_holder(access)
    other = next(lb for lb in lab_config.LB_HOSTS if lb != holder)
    dbsize = f"{load_balancer.cache_cli('dbsize')} 2>/dev/null"
    assert int(access.ssh(holder, dbsize)) > 0, "the drills before pulled through it"
    access.ssh(holder, "systemctl stop haproxy")
    assert wait_for_holder(access, lbs=(other,)) == other
    deadline = time.monotonic() + 10
    while int(access.ssh(holder, dbsize)) != 0:
        assert time.monotonic() < deadline, f"{holder}'s cache was not emptied when it gave the address up"
        time.sleep(0.2)
    fixed = run_deploy(access.inventory)
    assert fixed.returncode == 0 and fixed.changed_hosts() == {holder}, fixed.changes()
    assert access.ssh(holder, "systemctl is-active haproxy") == "active"
    wait_for_lb(access, {f"registry{i}": "UP" for i in range(1, REPLICAS + 1)})


def test_a_load_balancer_stopped_disabled_or_edited_by_hand_is_put_back(scale):
    access, _ = scale
    backup = next(lb for lb in lab_config.LB_HOSTS if lb != wait_for_holder(access))
    access.ssh(backup, "systemctl stop haproxy redis-server && systemctl disable keepalived 2>/dev/null "
                       "&& echo '# by hand' >> /etc/haproxy/haproxy.cfg && echo '# by hand' >> /etc/redis/redis.conf")
    dry = run_deploy(access.inventory, "--dry")
    assert dry.returncode == 0 and {h for _, h in dry.planned()[0]} == {backup}, dry.planned()
    for said in ("haproxy.cfg differs from the inventory's", "haproxy is not running",
                 "keepalived does not start at boot", "redis.conf differs from the inventory's",
                 "redis-server is not running"):
        assert said in dry.stderr, said
    fixed = run_deploy(access.inventory)
    assert fixed.returncode == 0 and fixed.changed_hosts() == {backup}, fixed.changes()
    assert access.ssh(backup, "systemctl is-active haproxy keepalived redis-server; "
                              "systemctl is-enabled haproxy keepalived redis-server; "
                              "cat /etc/haproxy/haproxy.cfg /etc/redis/redis.conf | grep -c 'by hand'",
                      check=False).split() == ["active"] * 3 + ["enabled"] * 3 + ["0"]
    wait_for_lb(access, {f"registry{i}": "UP" for i in range(1, REPLICAS + 1)})
    again = run_deploy(access.inventory)
    assert again.returncode == 0 and again.changed_hosts() == set(), again.changes()


def inventory_without(inventory: Path, path: Path, replica: str) -> Path:
    """`inventory` with `replica` moved from registry_servers to docker_clients."""
    fleet = load_fleet(str(inventory))

    def entries(hosts) -> str:
        return "".join(f"    ({h.name!r}, {dict(h.data)!r}),\n" for h in hosts)

    kept = [s for s in fleet.servers if s.name != replica]
    moved = [s for s in fleet.servers if s.name == replica]
    path.write_text(f"registry_servers = [\n{entries(kept)}]\nregistry_lb = [\n{entries(fleet.lbs)}]\n"
                    f"docker_clients = [\n{entries([*fleet.clients, *moved])}]\n")
    return path


def test_a_replica_taken_out_of_the_inventory_stops_and_keeps_its_data(scale, tmp_path, test_image_archive):
    """registry3 moved from registry_servers to the clients, with every client pulling: the load
    balancers stop sending it requests first, then its registry stops (restart policy no) and stays;
    --dry said so; nothing in the bucket goes, no pull fails. Put back, it serves again."""
    access, _ = scale
    fleet = access.fleet
    reference = f"{fleet.registry_address}/team/busybox:1"
    if ("team/busybox", "1") not in registry_client(access).manifests():
        push(access, fleet.clients[0].name, reference, test_image_archive)
    before = registry_client(access).manifests()
    take_a_replica_out(access, access.inventory, tmp_path, reference)
    assert registry_client(access).manifests() == before


def take_a_replica_out(access, inventory: Path, tmp_path: Path, reference: str) -> None:
    """The drill of the test above, on `inventory`, with every client pulling `reference`: registry3
    out, then back."""
    smaller = inventory_without(inventory, tmp_path / "two.py", "registry3")
    dry = run_deploy(smaller, "--dry")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert ("Retire a former registry replica | Stop the registry container 'registry', keep it and its data",
            "registry3") in dry.planned()[0]
    assert "ran regdeploy's registry (/etc/regdeploy/config.yml) and is no longer in 'registry_servers'" in dry.stderr
    assert access.ssh("registry3", "docker inspect -f '{{.State.Running}}' registry") == "true"
    with PullLoops(access, reference) as loops:
        time.sleep(3)
        removed = run_deploy(smaller)
        time.sleep(3)
    assert removed.returncode == 0, removed.stderr[-3000:]
    assert_no_failed_pull(loops.outcomes(), at_least=3)
    assert access.ssh("registry3", "docker inspect -f '{{.State.Running}} {{.HostConfig.RestartPolicy.Name}}' registry"
                      ) == "false no"
    assert access.ssh("registry3", "ls /etc/regdeploy/").split().count("config.yml.regdeploy-retired") == 1
    wait_for_lb(access, {"registry1": "UP", "registry2": "UP"})
    again = run_deploy(smaller)
    assert again.returncode == 0 and again.changed_hosts() == set(), again.changes()
    # Back in registry_servers: a registry again, behind both load balancers.
    back = run_deploy(inventory)
    assert back.returncode == 0, back.stderr[-3000:]
    wait_for_lb(access, {f"registry{i}": "UP" for i in range(1, REPLICAS + 1)})


def test_a_rolling_change_replaces_one_replica_at_a_time_and_keeps_every_image(scale, test_image_archive):
    access, _ = scale
    fleet = access.fleet
    client = fleet.clients[0].name
    for tag in ("2", "3"):
        push(access, client, f"{fleet.registry_address}/team/busybox:{tag}", test_image_archive)
    before = registry_client(access).manifests()
    assert len(before) >= 3
    ids = {s.name: access.ssh(s, "docker inspect -f '{{.Id}}' registry") for s in fleet.servers}
    since = access.ssh(fleet.lb, "date '+%Y-%m-%d %H:%M:%S'")
    # The lab's hosts are containers on one kernel: one clock for every host's Docker events.
    started = access.ssh(fleet.lb, "date +%s")
    with PullLoops(access, f"{fleet.registry_address}/team/busybox:1") as loops:
        time.sleep(2)
        # A change to every replica's config.yml: each is recreated.
        changed = run_deploy(access.inventory, "--data", "registry_allow_delete=true")
        time.sleep(2)
    assert changed.returncode == 0, changed.stderr[-4000:]
    assert_no_failed_pull(loops.outcomes(), at_least=5)
    assert {s.name: access.ssh(s, "docker inspect -f '{{.Id}}' registry") != ids[s.name]
            for s in fleet.servers} == {s.name: True for s in fleet.servers}
    # One at a time, as Docker saw it on each replica: the next replica's registry stops only once
    # the previous one's new container has started (and the script waited for haproxy to say UP).
    windows = sorted(_replacement_window(access, s, started) for s in fleet.servers)
    for (_, new_started), (next_stopped, _) in zip(windows, windows[1:]):
        assert new_started < next_stopped, windows
    # And each load balancer's own log: every replica was set to drain, before its registry stopped,
    # and never were two replicas out of rotation at once (drained, or DOWN by the health checks).
    for lb in fleet.lbs:
        journal = access.ssh(lb, f"journalctl -u haproxy --since {since!r} -o cat")
        events = re.findall(rf"Server {load_balancer.LB_BACKEND}/(\S+) (?:is |enters |remains )?(UP|DOWN|DRAIN|drain|READY|ready)",
                            journal)
        print(lb.name, events)
        assert {name for name, state in events if state.upper() == "DRAIN"} == {s.name for s in fleet.servers}, journal
        out: set[str] = set()
        for name, state in events:
            (out.add if state.upper() in ("DOWN", "DRAIN") else out.discard)(name)
            assert len(out) <= 1, events
    # Every replica recreated: every image and digest is still there, and pulls.
    assert registry_client(access).manifests() == before
    assert before[("team/busybox", "3")] in access.ssh(
        fleet.clients[1], f"docker pull -q {fleet.registry_address}/team/busybox:3 >/dev/null && docker image inspect "
                          f"-f '{{{{range .RepoDigests}}}}{{{{.}}}} {{{{end}}}}' {fleet.registry_address}/team/busybox:3")
    again = run_deploy(access.inventory, "--data", "registry_allow_delete=true")
    assert again.returncode == 0 and again.changed_hosts() == set(), again.changes()


def _replacement_window(access, server, since: str) -> tuple[int, int]:
    """(when the registry container named `registry` stopped, when its replacement started), in ns,
    from the server's Docker events since `since` (seconds since the epoch)."""
    until = access.ssh(server, "date +%s")
    form = "'{{.TimeNano}} {{.Action}} {{.Actor.Attributes.name}}'"
    lines = access.ssh(server, f"docker events --since {since} --until {until} --filter type=container --format {form}")
    events = [(int(t), action, name) for t, action, name in (line.split(" ", 2) for line in lines.splitlines())]
    stopped = min(t for t, action, name in events if action in ("kill", "die", "stop") and name == "registry")
    new = min(t for t, action, name in events if action == "start" and name == "registry" and t > stopped)
    return stopped, new


def test_a_replica_whose_disk_holds_images_is_never_merged_into_the_bucket(scale):
    """A server that ran a registry on its disk, listed as a replica of a bucket that already holds a
    registry: regdeploy does not merge registries, so its replacement stops, the replica's previous
    container runs again, and the images on its disk stay where they are."""
    access, _ = scale
    server = access.fleet.servers[0]
    kept = "/var/lib/registry/docker/registry/v2/repositories/old/app/_manifests/tags/1/current/link"
    access.ssh(server, f"mkdir -p {kept.rsplit('/', 1)[0]} && echo sha256:{'0' * 64} > {kept}")
    container = access.ssh(server, "docker inspect -f '{{.Id}}' registry")
    try:
        # A change that recreates every replica (the one before this test allowed deletes).
        refused = run_deploy(access.inventory, "--data", "registry_allow_delete=false")
        assert refused.returncode != 0
        assert "already holds a registry (docker/...): regdeploy does not merge registries" in refused.stderr
        assert access.ssh(server, f"cat {kept}") == f"sha256:{'0' * 64}"
        assert access.ssh(server, "docker inspect -f '{{.Id}} {{.State.Running}}' registry") == f"{container} true"
    finally:
        access.ssh(server, "rm -rf /var/lib/registry/docker")
    wait_for_lb(access, {f"registry{i}": "UP" for i in range(1, REPLICAS + 1)})


def store_s3(command: str, *curl_args: str) -> str:
    """curl against the lab store's S3 API, on the store, with the lab's key (from stdin)."""
    key = SCALE_LAB.s3_secret_path.read_text().splitlines()[0]
    result = subprocess.run(
        lab_ssh.ssh_command(SCALE_LAB, lab_config.STORE_HOST,
                              "curl -fsS -K - --aws-sigv4 aws:amz:us-east-1:s3 -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "
                              + " ".join(curl_args) + f" http://127.0.0.1:{lab_config.STORE_PORT}/{command}"),
        input=credentials.curl_config(lab_config.STORE_ACCESS_KEY, key), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_single_server_moves_onto_the_bucket_with_every_image_and_never_back(scale, tmp_path, test_image_archive):
    """One server on its disk with images, switched to S3: the images are copied into the (empty)
    bucket and verified before the registry on the bucket starts; the disk's copy stays, marked, and a
    switch back to the disk (whose copy lacks what was pushed since) is refused."""
    access, _ = scale
    host = "client2"
    image = {"registry_image_archive": str(SCALE_LAB.registry_archive),
             "registry_image_archive_sha256": archive_sha256(str(SCALE_LAB.registry_archive))}
    on_disk = access.single_server_inventory(host, tmp_path / "disk.py", **image)
    first = run_deploy(on_disk)
    assert first.returncode == 0, first.stderr[-4000:]
    access.load_image_archive(host, test_image_archive)
    for name in ("team/a:1", "team/b:2", "other/c:3"):
        access.ssh(host, f"docker tag {lab_config.TEST_IMAGE} {host}:5000/{name} && docker push -q {host}:5000/{name}")
    api = RegistryClient(base_url(f"{access.fleet.clients[1].address}:5000"))
    before = api.manifests()
    assert len(before) == 3
    store_s3("moved", "-X PUT")
    s3 = {key: value for key, value in access.fleet.server.data.items() if key.startswith("registry_s3_")}
    on_s3 = access.single_server_inventory(host, tmp_path / "s3.py", **{
        **image, **s3, "registry_storage": "s3", "registry_s3_bucket": "moved"})
    moved = run_deploy(on_s3)
    assert moved.returncode == 0, moved.stderr[-4000:]
    assert any("copy the images in /var/lib/registry into the S3 bucket" in name
               for name in moved.changed_operations(host)), moved.changes()
    # Served from the bucket now: every tag, same digest; the layers are objects in the bucket.
    assert api.manifests() == before
    assert "docker/registry/v2/blobs/sha256/" in store_s3("moved?prefix=docker%2Fregistry%2Fv2%2Fblobs%2F")
    # Every local copy gone, so the layers come from the bucket.
    access.ssh(host, f"docker image rm {host}:5000/team/a:1 {host}:5000/team/b:2 {host}:5000/other/c:3 "
                     f"{lab_config.TEST_IMAGE} && docker pull -q {host}:5000/other/c:3")
    # The disk's copy stays, marked; the next run copies nothing.
    assert set(access.ssh(host, "ls /var/lib/registry/docker/registry/v2/repositories").split()) == {"other", "team"}
    assert set(access.ssh(host, "ls -A /var/lib/registry").split()) == {".regdeploy-moved-to-s3", "docker"}
    again = run_deploy(on_s3)
    assert again.returncode == 0 and again.changed_hosts() == set(), again.changes()
    # Back to the disk would serve the old copy without what was pushed since: refused, nothing changed.
    access.ssh(host, f"docker tag {host}:5000/other/c:3 {host}:5000/team/new:1 && docker push -q {host}:5000/team/new:1")
    back = run_deploy(on_disk)
    assert back.returncode != 0 and "copied into the S3 bucket" in back.stderr, back.stderr[-2000:]
    assert ("team/new", "1") in api.manifests()


def test_prune_and_gc_on_replicas_go_one_replica_at_a_time_and_fail_no_pull(scale, tmp_path, test_image_archive):
    """registry_retention `prune/* keep=2 protect=latest` on the bucket the replicas share: the dry run
    lists v1 and v2 of latest, v1..v4; the prune deletes exactly those, their layers leave the bucket,
    while every client pulls v4 in a loop through the load balancers with no failed pull; then every
    replica is writable again (a push works, a deploy changes nothing), and a gc on its own too."""
    access, _ = scale
    # The lab's own inventory, whatever the tests before left (the end checks the prune left no drift).
    converged = run_deploy(access.inventory)
    assert converged.returncode == 0, converged.stderr[-4000:]
    address = access.fleet.registry_address
    client = access.fleet.clients[0].name
    access.load_image_archive(client, test_image_archive)
    for tag in ("latest", "v1", "v2", "v3", "v4"):
        access.push_unique(client, f"{address}/prune/app:{tag}")
    registry = registry_client(access)
    before = registry.manifests()
    api = base_url(access.fleet.registry_api_address)
    manifest_type = "application/vnd.docker.distribution.manifest.v2+json"
    gone_layers = [requests.get(f"{api}/v2/prune/app/manifests/{before[('prune/app', tag)]}",
                                headers={"Accept": manifest_type}, timeout=10).json()["layers"][-1]["digest"]
                   for tag in ("v1", "v2")]
    inventory = access.inventory_with(tmp_path / "inventory-prune.py", registry_retention=["prune/* keep=2 protect=latest"])

    dry = regdeploy_json(inventory, "prune", "--dry-run", timeout=900)
    assert {(d["repository"], d["tag"]) for d in dry["delete"]} == {("prune/app", "v1"), ("prune/app", "v2")}, dry
    # pulled= reads every replica's access log. v1, pulled through the load balancers a minute after
    # the pushes, stays under pulled=1m; under pulled=1w nothing goes, since no log reaches back a week
    # (the lab made the replicas today).
    time.sleep(61)
    access.ssh(access.fleet.clients[1].name, f"docker pull -q {address}/prune/app:v1 >/dev/null")
    for server in access.fleet.servers:
        begin = retention.log_time(access.ssh(server, "docker logs -t registry 2>&1 | head -n 1 | cut -d' ' -f1"))
        assert begin is not None and time.time() - begin > 60, f"{server.name}'s log must reach back over the window"
    minute = access.inventory_with(tmp_path / "inventory-pulled.py",
                                   registry_retention=["prune/* keep=2 protect=latest pulled=1m"])
    pulled = regdeploy_json(minute, "prune", "--dry-run", timeout=900)
    assert [(d["repository"], d["tag"]) for d in pulled["delete"]] == [("prune/app", "v2")], pulled
    week = access.inventory_with(tmp_path / "inventory-week.py", registry_retention=["prune/* keep=2 pulled=1w"])
    unknown = regdeploy_json(week, "prune", "--dry-run", timeout=900)
    assert unknown["delete"] == [] and unknown["pulls_unknown"] == ["prune/* keep=2 pulled=604800s"], unknown
    wait_for_lb(access, {f"registry{i}": "UP" for i in range(1, REPLICAS + 1)})
    with PullLoops(access, f"{address}/prune/app:v4") as pulls:
        pulls.settle()
        began = time.time()
        report = regdeploy_json(inventory, "prune", timeout=900)
        ended_at = pulls.settle()
    outcomes = pulls.outcomes()
    assert_pulled_throughout(outcomes, began, ended_at)
    collected = report["collected"]
    assert (collected["pruned_tags"], collected["skipped_tags"]) == (2, 0), report
    assert collected["replicas"] == [s.name for s in access.fleet.servers], collected
    assert registry.manifests() == {k: d for k, d in before.items() if k not in {("prune/app", "v1"), ("prune/app", "v2")}}
    for layer in gone_layers:
        assert requests.head(f"{api}/v2/prune/app/blobs/{layer}", timeout=10).status_code == 404, layer
    assert collected["before_bytes"] - collected["after_bytes"] >= 2 * 300_000, collected
    print(f"prune on {REPLICAS} replicas: read-only {collected['readonly_seconds']} s (collector "
          f"{collected['collector_seconds']} s); {sum(map(len, outcomes.values()))} pulls on {len(outcomes)} clients, "
          "none failed")

    # Every replica writable again, with its own config: a push works, a deploy has nothing to do.
    wait_for_lb(access, {f"registry{i}": "UP" for i in range(1, REPLICAS + 1)})
    for server in access.fleet.servers:
        assert access.ssh(server, "ls /etc/regdeploy/ | grep -c regdeploy-writable || true") == "0", server.name
    access.push_unique(client, f"{address}/prune/app:v5")
    # The pruned v1, pushed again from the client that made it: its layer left the bucket, and the cache
    # the replicas share was emptied after the collector, so nothing says the layer is still there: the
    # push uploads it, and the image is whole where it was pulled from scratch.
    access.ssh(client, f"docker push -q {address}/prune/app:v1 >/dev/null")
    assert requests.head(f"{api}/v2/prune/app/blobs/{gone_layers[0]}", timeout=10).status_code == 200
    access.ssh(access.fleet.clients[1].name, f"docker image rm -f {address}/prune/app:v1 >/dev/null 2>&1; "
                                             f"docker pull -q {address}/prune/app:v1 >/dev/null")
    again = run_deploy(access.inventory)
    assert again.returncode == 0 and again.changed_hosts() == set(), again.changes()
    kept = registry.manifests()
    gc = regdeploy_json(access.inventory, "gc", timeout=900)
    assert gc["tags"] == len(kept) and registry.manifests() == kept, gc


def secure_inventory(access, tmp_path: Path, passwords: Path, word: str) -> Path:
    """The lab's inventory in TLS with two accounts: `ci` pushes (the first client logs in as it), `nodes`
    only pulls (the second client); their passwords in `passwords` (0600), each with `word` in it."""
    passwords.write_text(f"ci:ci-{word}-Pa55\nnodes:nodes-{word}-Pa55\n")
    passwords.chmod(0o600)
    return access.inventory_with(
        tmp_path / "secure.py", per_host={access.fleet.clients[1].name: {"registry_login_user": "nodes"}},
        registry_tls=True, registry_auth=True, registry_users=["ci", "nodes"],
        registry_access=["ci * pull,push,delete", "nodes * pull"], registry_tls_dir=str(tmp_path / "tls"),
        registry_password_file=str(passwords))


def test_accounts_with_rights_over_tls_through_the_load_balancer(scale, tmp_path, test_image_archive):
    """Last (it leaves the replicas in TLS with accounts): every replica runs the token service with the
    same key, rules and accounts, haproxy passes TLS and the token port through to them, a pull-only
    account is denied a push, pulls go on with a replica's machine dead, the active load balancer's
    machine killed costs only the requests in flight, a replica taken out and put back costs no pull,
    and a password, CA and certificate rotation, each with every client pulling in a loop, cost no
    pull."""
    access, _ = scale
    pusher, puller = (c.name for c in access.fleet.clients[:2])
    passwords = tmp_path / "passwords"
    secure = secure_inventory(access, tmp_path, passwords, "Scale")
    first = run_deploy(secure)
    assert first.returncode == 0, first.stderr[-4000:]
    again = run_deploy(secure)
    assert again.returncode == 0 and again.changed_hosts() == set(), again.changes()
    for i in range(1, REPLICAS + 1):
        assert access.ssh(f"registry{i}", "systemctl is-active regdeploy-token") == "active"
    wait_for_lb(access, {f"registry{i}": "UP" for i in range(1, REPLICAS + 1)})

    reference = f"{access.fleet.registry_address}/team/secure:1"
    push(access, pusher, reference, test_image_archive)
    access.ssh(puller, f"docker pull -q {reference} >/dev/null")
    denied = access.ssh(puller, f"docker tag {reference} {reference}-nodes && docker push {reference}-nodes 2>&1",
                        check=False)
    assert "denied" in denied, denied

    # A replica's machine killed with every client pulling: TLS ends at the load balancers, so what the
    # dead replica never answered is sent again, as in plain HTTP, and no pull fails. Its token service
    # is out of the rotation too, and both come back with its machine.
    victim = "registry3"
    kill_a_replica_while_every_client_pulls(access, reference, victim)
    wait_for_lb(access, {f"registry{i}": "UP" for i in range(1, REPLICAS + 1)})
    assert access.ssh(victim, "systemctl is-active regdeploy-token") == "active"

    # The other drills, over TLS: the active load balancer's machine killed (the same bound as in plain
    # HTTP: TLS ends at the machine that died), and a replica taken out of the inventory and put back.
    kill_the_active_load_balancer(access, secure, reference)
    take_a_replica_out(access, secure, tmp_path, reference)

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/verify", f"--inventory={secure}",
         f"--test-image-archive={test_image_archive}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:]

    # Rotations, each one deploy with every client pulling in a loop (each pull asks for a token and
    # fetches every layer): a password, then the CA with an overlap (begin, switch, finish), then the
    # server certificate alone. The certificate changes replace the replicas one at a time.
    regdeploy = str(Path(sys.executable).parent / "regdeploy")
    steps = [("password", None), ("ca begin", "begin"), ("ca switch", "switch"), ("ca finish", "finish"),
             ("certificate", "cert")]
    counts = {}
    for name, step in steps:
        if step is None:
            passwords.write_text("ci:ci-Scale-Rotated\nnodes:nodes-Scale-Rotated\n")
        else:
            said = subprocess.run([regdeploy, "-i", str(secure), "rotate-ca", step], capture_output=True, text=True,
                                  timeout=60)
            assert said.returncode == 0, said.stderr
        with PullLoops(access, reference) as loops:
            time.sleep(3)
            rotated = run_deploy(secure)
            time.sleep(3)
        assert rotated.returncode == 0, (name, rotated.stderr[-3000:])
        outcomes = loops.outcomes()
        assert_no_failed_pull(outcomes, at_least=3)
        counts[name] = {client: len(lines) for client, lines in outcomes.items()}
        wait_for_lb(access, {f"registry{i}": "UP" for i in range(1, REPLICAS + 1)})
    print(f"pulls per client through each rotation, none failed: {counts}")
    assert run_deploy(secure).changed_hosts() == set()
