"""Reliability drills on the lab: faults, hostile input and concurrent runs, with nothing lost.

Each drill breaks something the way it breaks on real fleets and checks the promise that matters:
files byte-for-byte unchanged when the deploy refuses, the registry back with every image, the
next run converging with no manual cleanup. Figures (seconds) are printed for the docs.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lab import config as lab_config
from lab import ssh as lab_ssh
from lab.docker import docker
from regdeploy import deploy_lock
from regdeploy.daemon_config import INSECURE_REGISTRIES_FORMAT
from regdeploy.registry_api import RegistryClient
from regdeploy.rendering import render
from tests.access import REPO_ROOT, Access, own_lab, run_deploy

DRILL_LAB = lab_config.default_lab("regdeploy-drill")
REGDEPLOY = str(Path(sys.executable).parent / "regdeploy")
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
DAEMON_JSON = "/etc/docker/daemon.json"
# What must not move when a deploy refuses: the file (type, mode, size, content, link target).
FILE_STATE = (f"stat -c '%F %a %s' {DAEMON_JSON}; readlink {DAEMON_JSON}; "
              f"sha256sum {DAEMON_JSON} 2>/dev/null || true")
DOCKER_STATE = (f"systemctl show docker -p MainPID --value; "
                f"docker info --format {shlex.quote(INSECURE_REGISTRIES_FORMAT)}")


@pytest.fixture(scope="module")
def access(lab_session):
    lab_session.ensure_deployed()
    return lab_session.access()


@pytest.fixture(scope="module")
def stored(access, test_image_archive):
    """Two different images under three tags in the registry, pushed from client1: what must survive."""
    access.load_image_archive("client1", test_image_archive)
    access.ssh("client1", "docker rm -f mk >/dev/null 2>&1; docker run --name mk busybox sh -c 'echo x > /x' && "
                          "docker commit mk registry:5000/drill/two:2 >/dev/null && docker rm mk >/dev/null && "
                          "docker push -q registry:5000/drill/two:2 && "
                          "for t in 1 latest; do docker tag busybox registry:5000/drill/one:$t && "
                          "docker push -q registry:5000/drill/one:$t; done")
    found = _registry(access).manifests()
    assert {("drill/one", "1"), ("drill/one", "latest"), ("drill/two", "2")} <= set(found)
    return found



def _registry(access: Access) -> RegistryClient:
    return RegistryClient(f"http://{access.fleet.registry_api_address}")


# --- Hostile daemon.json files ------------------------------------------------------------------

HOSTILE = {
    "malformed": ("printf '{\"insecure-registries\": [' > F", "is not valid JSON"),
    "not an object": ("printf '[\"registry:5000\"]' > F", "must hold a JSON object, not list"),
    "registries as a string": ("printf '{\"insecure-registries\": \"old.example:5000\"}' > F",
                               "'insecure-registries' must be a list of strings"),
    "a number among registries": ("printf '{\"insecure-registries\": [\"old.example:5000\", 5000]}' > F",
                                  "'insecure-registries' must be a list of strings"),
    "mirrors as an object": ("printf '{\"registry-mirrors\": {\"url\": \"https://m.example\"}}' > F",
                             "'registry-mirrors' must be a list of strings"),
    "byte order mark": ("printf '\\357\\273\\277{\"debug\": true}' > F", "Unexpected UTF-8 BOM"),
    "a key set twice": ("printf '{\"debug\": true, \"debug\": false}' > F", "sets the key 'debug' twice"),
    "symbolic link": ("printf '{}' > /etc/docker/real.json && ln -s /etc/docker/real.json F",
                      "is a symbolic link to /etc/docker/real.json"),
    "unreadable mode": ("printf '{}' > F && chmod 000 F", "has mode 000"),
    "a directory": ("mkdir F", "is a directory, not a regular file"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_daemon_json_stops_the_deploy_and_is_left_byte_for_byte(lab_session, access, case):
    setup, message = HOSTILE[case]
    original = access.ssh("client1", f"cat {DAEMON_JSON}")
    access.ssh("client1", f"rm -rf {DAEMON_JSON} && " + setup.replace("F", DAEMON_JSON))
    try:
        files_before, docker_before = access.ssh("client1", FILE_STATE), access.ssh("client1", DOCKER_STATE)
        others = {h.name: access.ssh(h, f"sha256sum {DAEMON_JSON} 2>/dev/null || echo absent")
                  for h in access.fleet.hosts if h.name != "client1"}
        result = run_deploy(lab_session.inventory, "--data", "registry_mirrors=https://mirror.example")
        assert result.returncode != 0
        assert f"host 'client1': {DAEMON_JSON}" in result.stderr and message in result.stderr, result.stderr[-2000:]
        assert access.ssh("client1", FILE_STATE) == files_before, "the file must be left byte for byte"
        assert access.ssh("client1", DOCKER_STATE) == docker_before, "Docker must not be reloaded or restarted"
        assert {h: access.ssh(h, f"sha256sum {DAEMON_JSON} 2>/dev/null || echo absent") for h in others} == others, \
            "nothing changes anywhere"
    finally:
        access.ssh("client1", f"rm -rf {DAEMON_JSON} /etc/docker/real.json && "
                              f"cat > {DAEMON_JSON} <<'EOF'\n{original}\nEOF")


def test_a_file_the_daemon_has_not_loaded_is_reloaded(lab_session, access):
    # As after a deploy killed between writing daemon.json and reloading Docker: the file lists a
    # registry the daemon does not trust yet. The next run reloads instead of calling it converged.
    original = json.loads(access.ssh("client1", f"cat {DAEMON_JSON}"))
    access.ssh("client1", "systemctl stop docker")
    try:
        access.ssh("client1", f"cat > {DAEMON_JSON} <<'EOF'\n"
                              f"{json.dumps({**original, 'insecure-registries': []})}\nEOF\n"
                              "systemctl start docker")
        access.ssh("client1", f"cat > {DAEMON_JSON} <<'EOF'\n{json.dumps(original)}\nEOF")
        assert "registry:5000" not in access.ssh("client1", DOCKER_STATE)
        result = run_deploy(lab_session.inventory)
        assert result.returncode == 0, result.stderr[-3000:]
        assert any(", reload Docker and" in op for op in result.changed_operations("client1"))
        assert "registry:5000" in access.ssh("client1", DOCKER_STATE).split()
    finally:
        access.ssh("client1", f"cat > {DAEMON_JSON} <<'EOF'\n{json.dumps(original)}\nEOF\nsystemctl reload docker")
    assert run_deploy(lab_session.inventory).totals["success"] == 0


def test_docker_stopped_and_disabled_by_hand_is_started_and_enabled_again(lab_session, access):
    # The fact calls Docker "running and enabled" without asking systemctl only for a dockerd in
    # docker.service's cgroup under an enabled unit. Here neither holds (the socket too, so nothing
    # wakes Docker up behind the test's back): systemctl is asked, and the run mends both.
    access.ssh("client1", "systemctl disable --now docker.socket docker.service 2>/dev/null")
    try:
        assert access.ssh("client1", "systemctl is-enabled docker; systemctl is-active docker; true").split() \
            == ["disabled", "inactive"]
        result = run_deploy(lab_session.inventory)
        assert result.returncode == 0, result.stderr[-3000:]
        assert any(name.endswith("Start Docker and enable it at boot") for name in result.changed_operations("client1"))
        assert access.ssh("client1", "systemctl is-enabled docker; systemctl is-active docker").split() \
            == ["enabled", "active"]
        assert "registry:5000" in access.ssh("client1", DOCKER_STATE).split()
    finally:
        access.ssh("client1", "systemctl enable --now docker.socket docker.service 2>/dev/null")
    assert run_deploy(lab_session.inventory).totals["success"] == 0


# --- The registry process dies ------------------------------------------------------------------

def test_the_registry_killed_with_sigkill_is_back_within_10_s_with_every_image(access, stored):
    registry = _registry(access)
    before = registry.manifests()
    pid = access.ssh("registry", "docker inspect -f '{{.State.Pid}}' registry")
    start = time.monotonic()
    access.ssh("registry", f"kill -9 {pid}")
    # Docker restarts it (restart policy always); count from the kill to the first answer of /v2/.
    for _ in range(100):
        if access.ssh("registry", "docker inspect -f '{{.State.Pid}}' registry") != pid:
            break
        time.sleep(0.05)
    back = time.monotonic() - start + access.wait_until_serving("registry", limit=10)
    print(f"registry back {back:.2f} s after kill -9")
    assert back < 10
    assert registry.manifests() == before


# --- A client is unreachable --------------------------------------------------------------------

def test_an_unreachable_client_does_not_stop_the_others_and_converges_on_the_next_run(lab_session, access):
    container = lab_session.lab.container_name("client2")
    docker("stop", "-t", "1", container)
    try:
        result = run_deploy(lab_session.inventory, "--data", "registry_port=5006")
        assert result.returncode != 0
        assert result.output["results"]["failed_hosts"] == ["client2"]
        assert re.search(r"\[client2\] +Could not connect", result.stderr), result.stderr[-3000:]
        assert result.changed_hosts() == {h.name for h in access.fleet.hosts} - {"client2"}
        assert "registry:5006" in access.ssh("client1", DOCKER_STATE).split()
    finally:
        docker("start", container)
        lab_ssh.wait_for_ssh(lab_session.lab, ["client2"])
    fresh = lab_session.access()
    again = run_deploy(lab_session.inventory, "--data", "registry_port=5006")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.changed_hosts() == {"client2"}
    assert "registry:5006" in fresh.ssh("client2", DOCKER_STATE).split()
    back = run_deploy(lab_session.inventory)
    assert back.returncode == 0, back.stderr[-3000:]
    assert run_deploy(lab_session.inventory).totals["success"] == 0


# --- A deploy is killed half-way ----------------------------------------------------------------

def _deploy_in_background(inventory: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([PYINFRA, "-y", str(inventory), "deploy.py", *extra], cwd=REPO_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_deploy_killed_during_the_registry_recreate_converges_on_the_next_run(lab_session, access, stored):
    registry = _registry(access)
    before = registry.manifests()
    # Deterministic moment: right after the old container is renamed aside, before the new one runs.
    # (The pattern's brackets keep pkill from matching this very command line.)
    watcher = subprocess.Popen(["ssh", "-F", str(access.ssh_config), "registry",
                                "timeout 120 docker events --filter event=rename --format x | { read -r _; "
                                "pkill -9 -f 'run-registr[y].sh.j2'; echo killed; "
                                "pkill -f 'docker event[s] --filter event=rename'; }"],
                               stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    deploy = _deploy_in_background(lab_session.inventory, "--data", "registry_port=5007")
    assert watcher.communicate(timeout=180)[0].strip() == "killed"
    deploy.kill()
    deploy.wait()
    names = access.ssh("registry", "docker ps -a --format '{{.Names}}'").split()
    assert "registry.regdeploy-old" in names, names

    result = run_deploy(lab_session.inventory, "--data", "registry_port=5007")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "registry.regdeploy-old" not in access.ssh("registry", "docker ps -a --format '{{.Names}}'").split()
    assert RegistryClient(f"http://{access.fleet.server.address}:5007").manifests() == before
    assert run_deploy(lab_session.inventory, "--data", "registry_port=5007").totals["success"] == 0
    assert run_deploy(lab_session.inventory).returncode == 0
    assert registry.manifests() == before


@pytest.mark.parametrize("delay", [0.3, 0.7, 1.1, 1.5, 1.9])
def test_a_deploy_killed_during_the_client_phase_never_leaves_a_half_written_daemon_json(
        lab_session, access, delay):
    old = json.loads(access.ssh("client1", f"cat {DAEMON_JSON}"))
    deploy = _deploy_in_background(lab_session.inventory, "--data", "registry_port=5008")
    time.sleep(delay)
    access.ssh("client1", "pkill -9 -f 'apply-daemon-jso[n].sh.j2' || true")
    deploy.kill()
    deploy.wait()
    now = json.loads(access.ssh("client1", f"cat {DAEMON_JSON}"))  # valid JSON, whatever the moment
    added = old["insecure-registries"] + ([] if "registry:5008" in old["insecure-registries"] else ["registry:5008"])
    assert now in (old, {**old, "insecure-registries": added}), now
    assert access.host("client1").service("docker").is_running
    result = run_deploy(lab_session.inventory, "--data", "registry_port=5008")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "registry:5008" in access.ssh("client1", DOCKER_STATE).split()
    assert run_deploy(lab_session.inventory).returncode == 0


# --- Two deploys at once ------------------------------------------------------------------------

def test_two_deploys_at_once_take_turns_on_each_host(lab_session, access):
    results = {}

    def deploy(name, *extra):
        results[name] = run_deploy(lab_session.inventory, "--data", "registry_port=5009", *extra)

    first = threading.Thread(target=deploy, args=("first",))
    first.start()
    _wait_until_every_host_is_locked(access)
    deploy("second")
    first.join()
    assert results["first"].returncode == 0, results["first"].stderr[-3000:]
    assert results["second"].returncode == 0, results["second"].stderr[-3000:]
    # The second waited for the first on every host, then found nothing left to do.
    assert "waited" in results["second"].stderr and "for another regdeploy run on this host" in results["second"].stderr
    assert results["first"].changed_hosts() == {h.name for h in access.fleet.hosts}
    assert results["second"].totals["success"] == 0
    assert access.ssh("registry", "docker inspect -f '{{(index .HostConfig.PortBindings \"5000/tcp\" 0).HostPort}}'"
                                  " registry") == "5009"

    # Told not to wait: the second stops at once, names the holder, and changes nothing. The run
    # holding every host's lock is played by the test (the deploy's own lock script, on an SSH
    # connection of its own), so it holds them for as long as needed however loaded the machine is.
    holders = _hold_every_lock(access)
    try:
        results["second"] = run_deploy(lab_session.inventory, "--data", "registry_port=5010",
                                       "--data", "deploy_lock_timeout=0")
    finally:
        for holder in holders:
            holder.kill()
            holder.wait()
    assert results["second"].returncode != 0
    assert "another regdeploy run holds this host's deploy lock (regdeploy deploy on" in results["second"].stderr
    assert all("registry:5010" not in access.ssh(h, f"cat {DAEMON_JSON} 2>/dev/null || true") for h in access.fleet.hosts)
    assert run_deploy(lab_session.inventory).returncode == 0  # back to port 5000
    assert run_deploy(lab_session.inventory).totals["success"] == 0


def _hold_every_lock(access: Access) -> list[subprocess.Popen]:
    """Take every host's deploy lock as a deploy would, each on an SSH connection that stays open
    until its process is killed."""
    script = render("deploy-lock.sh.j2", lock=deploy_lock.LOCK_PATH, lock_timeout=60,
                    holder=deploy_lock.holder("regdeploy deploy")) + "\ntake_deploy_lock && echo taken && sleep 600\n"
    holders = []
    for h in access.fleet.hosts:
        holder = subprocess.Popen(["ssh", "-F", str(access.ssh_config), "-o", "ControlMaster=no", "-o",
                                   "ControlPath=none", h.name, "sh", "-c", shlex.quote(script)],
                                  stdout=subprocess.PIPE, text=True)
        holders.append(holder)
        assert holder.stdout.readline().strip() == "taken", f"could not take the lock on {h.name}"
    return holders


def _wait_until_every_host_is_locked(access: Access, limit: float = 30) -> None:
    """Until a live deploy holds the lock on every host (its holder's sshd process still runs)."""
    held = ('[ -s /run/regdeploy.lock ] && read -r pid started rest < /run/regdeploy.lock && '
            '[ "$(cut -d" " -f22 /proc/$pid/stat 2>/dev/null)" = "$started" ] && echo held')
    deadline = time.monotonic() + limit
    for h in access.fleet.hosts:
        while access.ssh(h, held, check=False) != "held":
            assert time.monotonic() < deadline, f"no deploy took the lock on {h.name}"
            time.sleep(0.05)


# --- A server of its own: full disk, backup and restore -----------------------------------------

@pytest.fixture(scope="module")
def drill_lab(request, tmp_path_factory):
    with own_lab(request, DRILL_LAB, 1, tmp_path_factory.mktemp("drill")) as access:
        yield access


def test_a_full_disk_fails_the_push_cleanly_and_keeps_what_is_stored(drill_lab, tmp_path):
    # The registry's storage on a 24 MiB filesystem inside the lab host (never the machine's own disk).
    drill_lab.ssh("registry", "mkdir -p /srv/small && mount -t tmpfs -o size=24m tmpfs /srv/small")
    inventory = drill_lab.single_server_inventory(
        "registry", tmp_path / "inventory.py", registry_image_archive=str(DRILL_LAB.registry_archive),
        registry_data_dir="/srv/small")
    result = run_deploy(inventory)
    assert result.returncode == 0, result.stderr[-3000:]
    drill_lab.load_image_archive("registry", DRILL_LAB.test_image_archive)
    drill_lab.ssh("registry", "docker tag busybox registry:5000/kept/busybox:1 && docker push -q registry:5000/kept/busybox:1")
    registry = RegistryClient(f"http://{drill_lab.fleet.server.address}:5000")
    before = registry.manifests()

    # 32 MiB of random bytes: more than the filesystem has left.
    drill_lab.ssh("registry", "mkdir -p /tmp/big && head -c 33554432 /dev/urandom > /tmp/big/blob && "
                              "tar -C /tmp/big -c . | docker import - registry:5000/big/blob:1 >/dev/null")
    push = drill_lab.ssh("registry", "docker push registry:5000/big/blob:1 2>&1; echo exit=$?", check=False)
    assert "exit=0" not in push, push
    assert registry.manifests() == before, "what was stored before the full disk must be intact"
    drill_lab.ssh("registry", "docker image rm registry:5000/kept/busybox:1 busybox >/dev/null && "
                              "docker pull -q registry:5000/kept/busybox:1")

    drill_lab.ssh("registry", "mount -o remount,size=96m /srv/small")
    drill_lab.ssh("registry", "docker push -q registry:5000/big/blob:1")
    assert ("big/blob", "1") in registry.manifests()
    assert registry.manifests().items() >= before.items()


def test_backup_and_restore_onto_a_fresh_server_keep_every_tag_and_digest(access, stored, drill_lab, tmp_path):
    source = _registry(access)
    before = source.manifests()
    archive = tmp_path / "registry-backup.tar"
    backup = subprocess.run([REGDEPLOY, "-i", str(access.inventory), "backup", str(archive)],
                            capture_output=True, text=True, timeout=600)
    assert backup.returncode == 0, backup.stderr
    window = float(backup.stderr.split("read-only window: ")[1].split(" s")[0])
    print(f"backup: read-only window {window:.1f} s, archive {archive.stat().st_size} bytes")
    assert source.manifests() == before
    # The registry is writable again after the backup.
    access.ssh("client1", "docker tag busybox registry:5000/after/backup:1 && docker push -q registry:5000/after/backup:1")

    # A fresh server: deployed, empty, then restored.
    inventory = drill_lab.single_server_inventory("client1", tmp_path / "inventory.py",
                                                  registry_image_archive=str(DRILL_LAB.registry_archive))
    result = run_deploy(inventory)
    assert result.returncode == 0, result.stderr[-3000:]
    restore = subprocess.run([REGDEPLOY, "-i", str(inventory), "restore", str(archive)],
                             capture_output=True, text=True, timeout=600)
    assert restore.returncode == 0, restore.stderr
    target = RegistryClient(f"http://{drill_lab.fleet.clients[0].address}:5000")
    assert target.manifests() == before
    for repository, tag in before:
        drill_lab.ssh("client1", f"docker pull -q client1:5000/{repository}:{tag} >/dev/null")
        digest = drill_lab.ssh("client1", f"docker image inspect -f '{{{{index .RepoDigests 0}}}}' "
                                          f"client1:5000/{repository}:{tag}")
        assert digest.endswith(before[(repository, tag)]), (repository, tag, digest)

    # A restore never merges into a registry that holds data.
    again = subprocess.run([REGDEPLOY, "-i", str(inventory), "restore", str(archive)],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 6  # Exit.REFUSED
    assert "already holds data: restore goes into an empty registry only" in again.stderr
    assert run_deploy(inventory).totals["success"] == 0


def test_an_inventory_that_logs_in_as_another_user_works_through_sudo(drill_lab, tmp_path):
    """Deploy and the verify suite through `_sudo`, as for fleets that forbid root logins."""
    drill_lab.ssh("client1", "DEBIAN_FRONTEND=noninteractive apt-get install -y -q sudo >/dev/null 2>&1 && "
                             "id deployer >/dev/null 2>&1 || useradd -m -s /bin/sh deployer && "
                             "echo 'deployer ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/deployer && "
                             "mkdir -p ~deployer/.ssh && cp /root/.ssh/authorized_keys ~deployer/.ssh/ && "
                             "chown -R deployer ~deployer/.ssh")
    inventory = drill_lab.single_server_inventory(
        "client1", tmp_path / "inventory.py", registry_image_archive=str(DRILL_LAB.registry_archive),
        ssh_user="deployer", _sudo=True)
    result = run_deploy(inventory)
    assert result.returncode == 0, result.stderr[-3000:]
    again = run_deploy(inventory)
    assert again.returncode == 0 and again.totals["success"] == 0, again.stderr[-3000:]
    verify = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/verify",
                             f"--inventory={inventory}", f"--test-image-archive={DRILL_LAB.test_image_archive}"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-2000:]
    assert " passed" in verify.stdout and "failed" not in verify.stdout

    # The regdeploy command reaches the host as the deploy does: as deployer, through sudo (deployer
    # is not in the docker group: every docker command below needs the sudo). Each command's exit
    # code and --json report; no progress display off a terminal.
    assert drill_lab.ssh("client1", "id -nG deployer") == "deployer"

    def regdeploy(*args: str, inv: Path = inventory) -> subprocess.CompletedProcess:
        result = subprocess.run([REGDEPLOY, "-i", str(inv), *args], capture_output=True, text=True, timeout=600)
        assert "\r" not in result.stderr
        return result

    registry = RegistryClient(f"http://{drill_lab.fleet.clients[0].address}:5000")
    drill_lab.load_image_archive("client1", DRILL_LAB.test_image_archive)
    copied = regdeploy("copy", "busybox:latest", "sudo/copied:1", "--on", "client1", "--json")
    assert copied.returncode == 0, copied.stderr
    assert json.loads(copied.stdout)["digest"] == registry.manifest_digest("sudo/copied", "1")
    dry = regdeploy("gc", "--dry-run", "--json")
    assert dry.returncode == 0 and json.loads(dry.stdout)["dry_run"] is True, dry.stderr
    collected = regdeploy("gc", "--json")
    assert collected.returncode == 0, collected.stderr
    kept = registry.manifests()
    assert ("sudo/copied", "1") in kept and json.loads(collected.stdout)["tags"] == len(kept)

    archive = tmp_path / "sudo-backup.tar"
    backup = regdeploy("backup", str(archive), "--json")
    assert backup.returncode == 0, backup.stderr
    assert json.loads(backup.stdout)["bytes"] == archive.stat().st_size > 0
    # Into an emptied server (the container and its storage removed, then deployed again): every tag back.
    drill_lab.ssh("client1", "docker rm -f registry >/dev/null && rm -rf /var/lib/registry")
    assert run_deploy(inventory).returncode == 0
    assert registry.manifests() == {}
    restore = regdeploy("restore", str(archive), "--json")
    assert restore.returncode == 0, restore.stderr
    assert registry.manifests() == kept
    assert regdeploy("restore", str(archive)).returncode == 6  # Exit.REFUSED: never into data

    # A login the host refuses is told apart from the rest.
    refused = regdeploy("gc", "--dry-run", inv=drill_lab.single_server_inventory(
        "client1", tmp_path / "refused.py", ssh_user="nobody-here", _sudo=True))
    assert refused.returncode == 4, refused.stderr  # Exit.AUTH_REFUSED
    assert "Authentication error" in refused.stderr
