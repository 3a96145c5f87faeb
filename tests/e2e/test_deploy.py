"""End to end on the test lab: `pyinfra inventory deploy.py` from scratch, then change things.

The tests run in file order and build on each other, like an operator's day: cold deploy,
re-run, change the port, add a client, break things and see the deploy refuse.
"""

import json
import shlex
import time

import pytest

from lab import config as lab_config
from lab import hosts as lab_hosts
from regdeploy import __version__
from regdeploy.daemon_config import INSECURE_REGISTRIES_FORMAT
from tests.access import assert_did_what_dry_said, run_deploy

PREFILLED = {
    "log-driver": "json-file",
    "log-opts": {"max-size": "10m", "max-file": "3"},
    "data-root": "/var/lib/docker",
    "insecure-registries": ["legacy.example:5000"],
    "labels": ["tier=lab"],
}
INSPECT_STARTED = "docker inspect -f '{{.State.StartedAt}} {{.State.Running}}' keepalive"


@pytest.fixture(scope="module")
def access(lab_session):
    return lab_session.access()


def _daemon_json(access, host):
    return json.loads(access.ssh(host, "cat /etc/docker/daemon.json"))


def _insecure_registries(access, host):
    return access.ssh(host, f"docker info --format {shlex.quote(INSECURE_REGISTRIES_FORMAT)}").split()


def _docker_hosts(access):
    """The hosts that pull with Docker (the lab's containerd and Podman hosts have docker_install_source none)."""
    return [h for h in access.fleet.hosts if h.settings.docker_install_source != "none"]


def _registry_container(access, server):
    return json.loads(access.ssh(server, "docker container inspect registry"))[0]


def test_cold_deploy_from_scratch(lab_session, access):
    lab_session.fresh()  # this module may run after another that deployed to the shared lab
    # client2 already has a daemon.json an operator wrote: the deploy must keep all of it.
    access.ssh("client2", f"mkdir -p /etc/docker && echo '{json.dumps(PREFILLED)}' > /etc/docker/daemon.json")
    for h in access.fleet.hosts:
        assert access.ssh(h, "command -v docker || echo none") == "none", "lab hosts must start fresh"

    # --dry first: the exact change to each daemon.json, and nothing done anywhere.
    dry = run_deploy(lab_session.inventory, "--dry")
    assert dry.returncode == 0, dry.stderr[-4000:]
    client2 = dry.host_log("client2")
    change = client2.index("Will modify /etc/docker/daemon.json and start Docker (insecure-registries changed):")
    assert client2[change + 1] == 'insecure-registries: + "registry:5000"'
    assert f"Will record: not managed by regdeploy before: this run records regdeploy {__version__}" in client2
    assert 'insecure-registries: (absent) -> ["registry:5000"]' in dry.host_log("client1")
    assert "Will create the registry container 'registry'" in dry.host_log("registry")
    for h in access.fleet.hosts:
        assert access.ssh(h, "command -v docker || echo none") == "none", "--dry must change nothing"
    assert json.loads(access.ssh("client2", "cat /etc/docker/daemon.json")) == PREFILLED

    start = time.monotonic()
    result = run_deploy(lab_session.inventory)
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr[-4000:]
    assert_did_what_dry_said(dry, result)
    assert result.totals["error"] == 0
    assert result.changed_hosts() == {h.name for h in access.fleet.hosts}
    lab_session.deployed = True
    print(f"cold deploy of 1+{len(access.fleet.clients)} lab hosts: {elapsed:.1f} s")


def test_prefilled_daemon_json_keeps_every_key(access):
    config = _daemon_json(access, "client2")
    for key in ("log-driver", "log-opts", "data-root", "labels"):
        assert config[key] == PREFILLED[key], key
    assert config["insecure-registries"] == ["legacy.example:5000", "registry:5000"]
    assert access.ssh("client2", "docker info -f '{{.LoggingDriver}}'") == "json-file"
    assert access.ssh("client2", "cat /etc/docker/daemon.json.regdeploy-bak") != ""


def test_second_run_changes_nothing(lab_session):
    start = time.monotonic()
    result = run_deploy(lab_session.inventory)
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.totals["success"] == 0, {h: result.changed_operations(h) for h in result.changed_hosts()}
    assert result.totals["error"] == 0
    assert result.output["results"]["failed_hosts"] == []
    print(f"no-op re-run: {elapsed:.1f} s")


def test_port_change_recreates_registry_and_reconfigures_clients_without_restarts(
        lab_session, access, test_image_archive):
    access.load_image_archive("client1", test_image_archive)
    access.ssh("client1", "docker rm -f keepalive >/dev/null 2>&1; docker run -d --name keepalive busybox sleep 100000")
    started_before = access.ssh("client1", INSPECT_STARTED)
    registry_before = _registry_container(access, "registry")["Id"]
    daemon_json_before = {h.name: access.ssh(h, "cat /etc/docker/daemon.json") for h in _docker_hosts(access)}

    dry = run_deploy(lab_session.inventory, "--data", "registry_port=5001", "--dry")
    for h in _docker_hosts(access):
        assert [line for line in dry.host_log(h.name) if line.startswith("insecure-registries:")] == [
            'insecure-registries: + "registry:5001"'], h.name
    assert dry.host_log("registry")[-3:-1] == ["Will recreate the registry container 'registry':",
                                               "ports: 5000->5000, 127.0.0.1:*->5001 -> 5001->5000, 127.0.0.1:*->5001"]
    assert _registry_container(access, "registry")["Id"] == registry_before
    assert {h.name: access.ssh(h, "cat /etc/docker/daemon.json") for h in _docker_hosts(access)} == daemon_json_before

    result = run_deploy(lab_session.inventory, "--data", "registry_port=5001")
    assert result.returncode == 0, result.stderr[-4000:]
    assert_did_what_dry_said(dry, result)

    registry = _registry_container(access, "registry")
    assert registry["Id"] != registry_before, "the registry container must be recreated"
    assert registry["HostConfig"]["PortBindings"]["5000/tcp"][0]["HostPort"] == "5001"
    assert access.ssh("registry", "curl -fsS -o /dev/null -w '%{http_code}' http://127.0.0.1:5001/v2/") == "200"
    for h in _docker_hosts(access):
        assert "registry:5001" in _daemon_json(access, h)["insecure-registries"], h.name
        assert "registry:5001" in _insecure_registries(access, h), h.name
        applied = [op for op in result.changed_operations(h.name) if op.startswith("Trust")]
        assert any(", reload Docker and" in op for op in applied), (h.name, applied)
    # Hosts that pull with containerd or Podman follow too, through their own files.
    for h in [h for h in access.fleet.hosts if h not in _docker_hosts(access)]:
        assert access.ssh(h, "cat /etc/containerd/certs.d/registry:5001/hosts.toml "
                             "/etc/containers/registries.conf.d/50-regdeploy.conf 2>/dev/null || true"), h.name
    assert access.ssh("client1", INSPECT_STARTED) == started_before, "a reload must not restart containers"

    # Back to the default port: recreated again, then converged.
    assert run_deploy(lab_session.inventory).returncode == 0
    assert _registry_container(access, "registry")["HostConfig"]["PortBindings"]["5000/tcp"][0]["HostPort"] == "5000"
    assert run_deploy(lab_session.inventory).totals["success"] == 0


def test_hand_edited_registry_config_is_restored_and_applied(lab_session, access):
    before = _registry_container(access, "registry")["Id"]
    original = access.ssh("registry", "cat /etc/regdeploy/config.yml")
    access.ssh("registry", "sed -i 's/enabled: true/enabled: false/' /etc/regdeploy/config.yml")
    edited = access.ssh("registry", "cat /etc/regdeploy/config.yml")
    dry = run_deploy(lab_session.inventory, "--dry")
    log = dry.host_log("registry")
    assert "Will modify /etc/regdeploy/config.yml:" in log
    diff = log[log.index("Will modify /etc/regdeploy/config.yml:") + 1:]
    assert diff[:2] == ["--- /etc/regdeploy/config.yml (on the host)", "+++ /etc/regdeploy/config.yml (regdeploy)"]
    assert diff.count("-    enabled: false") == diff.count("+    enabled: true") == 1, diff
    assert "config.yml: differs from the rendered template (edited by hand, or changed)" in log
    assert access.ssh("registry", "cat /etc/regdeploy/config.yml") == edited
    assert dry.planned()[0] and {h for _, h in dry.planned()[0]} == {"registry"}
    result = run_deploy(lab_session.inventory)
    assert result.returncode == 0, result.stderr[-4000:]
    assert_did_what_dry_said(dry, result)
    assert access.ssh("registry", "cat /etc/regdeploy/config.yml") == original
    after = _registry_container(access, "registry")
    assert after["Id"] != before and after["State"]["Running"], "the registry must run the restored config"
    assert run_deploy(lab_session.inventory).totals["success"] == 0


def test_a_restart_policy_changed_in_place_is_named_and_put_back(lab_session, access):
    # `docker update` keeps the container's spec label: the live container is compared with the spec.
    access.ssh("registry", "docker update --restart=no registry >/dev/null")
    plan = run_deploy(lab_session.inventory, "--dry")
    assert plan.returncode == 0, plan.stderr[-4000:]
    planned = [op["name"] for op in plan.output["plan"] if "registry" in op["hosts_with_change"]]
    assert "Run the Docker registry | Recreate the registry container 'registry': restart policy: no -> always" \
        in planned, planned
    assert _registry_container(access, "registry")["HostConfig"]["RestartPolicy"]["Name"] == "no"
    assert plan.host_log("registry")[-3:-1] == ["Will recreate the registry container 'registry':",
                                                "restart policy: no -> always"]
    result = run_deploy(lab_session.inventory)
    assert result.returncode == 0, result.stderr[-4000:]
    assert_did_what_dry_said(plan, result)
    assert _registry_container(access, "registry")["HostConfig"]["RestartPolicy"]["Name"] == "always"
    assert run_deploy(lab_session.inventory).totals["success"] == 0


def test_registry_data_survives_a_reboot_of_the_server(lab_session, access):
    target = "registry:5000/lab/reboot:1"
    access.ssh("client1", f"docker tag busybox {target} && docker push -q {target}")
    start = time.monotonic()
    lab_hosts.reboot(lab_session.lab, "registry")
    fresh = lab_session.access()
    fresh.wait_until_serving("registry")
    print(f"registry serving {time.monotonic() - start:.1f} s after the server's reboot began")
    tags = json.loads(fresh.ssh("registry", "curl -fsS http://127.0.0.1:5000/v2/lab/reboot/tags/list"))
    assert tags["tags"] == ["1"]
    assert _registry_container(fresh, "registry")["State"]["Running"]
    assert run_deploy(lab_session.inventory).totals["success"] == 0, "a reboot must not cause drift"


def test_limit_provisions_a_new_client_and_touches_nothing_else(lab_session):
    new = f"client{lab_config.TEST_LAB_CLIENTS + 1}"
    lab_session.up(clients=lab_config.TEST_LAB_CLIENTS + 1)  # a bookworm host
    # The planned docker-ce path on a fresh host (tests/e2e/test_docker_ce.py runs it for real against
    # the lab's signed stand-in mirror).
    plan = run_deploy(lab_session.inventory, "--limit", new, "--dry",
                      "--data", "docker_install_source=docker-ce")
    assert plan.returncode == 0, plan.stderr[-4000:]
    planned = [op["name"] for op in plan.output["plan"] if new in op["hosts_with_change"]]
    assert ("Install Docker | Add Docker's apt repository https://download.docker.com/linux/debian "
            "(bookworm stable, key in /etc/apt/keyrings/docker.gpg)") in planned
    assert "Will install docker-ce, docker-ce-cli, containerd.io" in plan.host_log(new), plan.host_log(new)

    result = run_deploy(lab_session.inventory, "--limit", new)
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.changed_hosts() == {new}
    access = lab_session.access()
    assert "registry:5000" in _insecure_registries(access, new)
    assert run_deploy(lab_session.inventory).totals["success"] == 0


@pytest.mark.parametrize("data,message", [
    ("registry_port=0", "registry_port=0 is out of range"),
    ("docker_install_source=snap", "docker_install_source='snap' is unknown"),
    ("registry_image=Registry:2", "uppercase letters are not allowed in the repository name 'Registry'"),
    ("registry_seed_images=busybox:1,bad image", "whitespace is not allowed"),
    ("registry_image_archive=/nonexistent/registry.tar", "does not exist on the controller"),
    ("registry_port=five", "registry_port='five' is not a whole number"),
    ("registry_ready_timeout=0", "registry_ready_timeout=0 is out of range"),
    ("registry_restart_policy=sometimes", "registry_restart_policy='sometimes' is not a Docker restart policy"),
    ("registry_data_dir=var/lib/registry", "registry_data_dir='var/lib/registry' must be an absolute path"),
    ("registry_config_dir=etc", "registry_config_dir='etc' must be an absolute path"),
    ("registry_container_name=my/registry", "registry_container_name='my/registry' is not a valid container name"),
    ("registry_mirrors=ftp://mirror.example", "registry_mirrors entry 'ftp://mirror.example' must be an http(s)://"),
    ("registry_host=bad_host!", "registry_host='bad_host!' is not a host name or IP address"),
    ("registry_image_archive_sha256=xyz", "registry_image_archive_sha256='xyz' must be 64 hex digits"),
    ("deploy_lock_timeout=-1", "deploy_lock_timeout=-1 is out of range"),
])
def test_invalid_inventory_data_stops_before_any_change(lab_session, data, message):
    access = lab_session.access()
    before = {h.name: access.ssh(h, "cat /etc/docker/daemon.json 2>/dev/null || true") for h in access.fleet.hosts}
    registry_before = _registry_container(access, "registry")["Id"]
    result = run_deploy(lab_session.inventory, "--data", data)
    assert result.returncode != 0
    assert message in result.stderr
    assert "nothing was changed on any host" in result.stderr
    assert {h.name: access.ssh(h, "cat /etc/docker/daemon.json 2>/dev/null || true") for h in access.fleet.hosts} == before
    assert _registry_container(access, "registry")["Id"] == registry_before


def test_malformed_daemon_json_is_left_untouched_and_named(lab_session):
    access = lab_session.access()
    original = access.ssh("client1", "cat /etc/docker/daemon.json")
    access.ssh("client1", "echo '{\"insecure-registries\": [' > /etc/docker/daemon.json")
    try:
        result = run_deploy(lab_session.inventory, "--data", "registry_mirrors=https://mirror.example")
        assert result.returncode != 0
        assert "host 'client1': /etc/docker/daemon.json is not valid JSON" in result.stderr
        assert access.ssh("client1", "cat /etc/docker/daemon.json") == '{"insecure-registries": ['
        # The other hosts did not get the mirror either: the deploy stopped before any change.
        assert "registry-mirrors" not in _daemon_json(access, "client2")
    finally:
        access.ssh("client1", f"cat > /etc/docker/daemon.json <<'EOF'\n{original}\nEOF")


def test_unknown_daemon_json_key_is_refused_before_a_reload(lab_session):
    # Docker 20.10 (client1, bookworm) has no `dockerd --validate`: regdeploy checks the keys itself.
    access = lab_session.access()
    original = access.ssh("client1", "cat /etc/docker/daemon.json")
    typo = json.dumps({**json.loads(original), "insecure-registry": ["typo.example:5000"]})
    access.ssh("client1", f"echo '{typo}' > /etc/docker/daemon.json")
    try:
        result = run_deploy(lab_session.inventory, "--data", "registry_mirrors=https://mirror.example")
        assert result.returncode != 0
        assert "host 'client1': /etc/docker/daemon.json: unknown daemon.json keys ['insecure-registry']" \
            in result.stderr
        assert json.loads(access.ssh("client1", "cat /etc/docker/daemon.json")) == json.loads(typo)
    finally:
        access.ssh("client1", f"cat > /etc/docker/daemon.json <<'EOF'\n{original}\nEOF")


def test_insecure_registry_on_the_dockerd_command_line_is_refused(lab_session):
    access = lab_session.access()
    dropin = "/etc/systemd/system/docker.service.d/regdeploy-test.conf"
    access.ssh("client2", f"mkdir -p {dropin.rsplit('/', 1)[0]} && printf '%s\\n' '[Service]' 'ExecStart=' "
                          f"'ExecStart=/usr/sbin/dockerd -H fd:// --insecure-registry old.example:5000' > {dropin}"
                          " && systemctl daemon-reload")
    try:
        result = run_deploy(lab_session.inventory)
        assert result.returncode != 0
        assert "host 'client2'" in result.stderr and "--insecure-registry on its command line" in result.stderr
    finally:
        access.ssh("client2", f"rm -f {dropin} && systemctl daemon-reload")
    assert run_deploy(lab_session.inventory).totals["success"] == 0


def test_registry_that_never_answers_fails_with_its_logs(lab_session, test_image_archive):
    # An image with no registry in it, which takes the registry's command (a config path) as an
    # argument: the container starts, exits, restarts, never serves /v2/.
    lab_session.ensure_deployed()
    access = lab_session.access()
    access.load_image_archive("registry", test_image_archive)
    access.ssh("registry", "docker rm -f mk >/dev/null 2>&1; docker create --name mk busybox >/dev/null && "
                           "docker commit --change 'ENTRYPOINT [\"sleep\"]' mk never-answers:1 >/dev/null && "
                           "docker rm mk >/dev/null")
    broken = ["--data", "registry_image=never-answers:1", "--data", "registry_image_archive=",
              "--data", "registry_image_archive_sha256=", "--data", "registry_ready_timeout=3"]
    try:
        result = run_deploy(lab_session.inventory, *broken)
        assert result.returncode != 0
        assert "the registry did not answer GET http://registry:5000/v2/ (at 127.0.0.1:5000) within 3 s" in result.stderr
        assert "last log lines of container registry" in result.stderr
    finally:
        restored = run_deploy(lab_session.inventory)
    assert restored.returncode == 0, restored.stderr[-4000:]
    assert "registry:2" in _registry_container(lab_session.access(), "registry")["Config"]["Image"]


def test_docker_that_ignores_daemon_json_is_rolled_back(lab_session):
    access = lab_session.access()
    dropin = "/etc/systemd/system/docker.service.d/regdeploy-test.conf"
    # dockerd reading another file never learns the registry: the apply must undo its change.
    access.ssh("client1", f"mkdir -p {dropin.rsplit('/', 1)[0]} && echo '{{}}' > /etc/docker/elsewhere.json && "
                          f"printf '%s\\n' '[Service]' 'ExecStart=' "
                          f"'ExecStart=/usr/sbin/dockerd -H fd:// --config-file /etc/docker/elsewhere.json' > {dropin}"
                          " && systemctl daemon-reload && systemctl restart docker")
    before = access.ssh("client1", "cat /etc/docker/daemon.json")
    try:
        result = run_deploy(lab_session.inventory, "--data", "registry_port=5002")
        assert result.returncode != 0
        assert "Docker does not list registry:5002 as an insecure registry 30 s after the reload" in result.stderr
        assert "restored the previous /etc/docker/daemon.json" in result.stderr
        assert access.ssh("client1", "cat /etc/docker/daemon.json") == before
        assert access.host("client1").service("docker").is_running
    finally:
        access.ssh("client1", f"rm -f {dropin} /etc/docker/elsewhere.json && systemctl daemon-reload "
                              "&& systemctl restart docker")
    assert run_deploy(lab_session.inventory).returncode == 0
    assert run_deploy(lab_session.inventory).totals["success"] == 0
