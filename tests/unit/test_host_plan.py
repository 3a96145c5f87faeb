"""plan_host: one host's settings and state in, its plan (or a refusal that names it) out."""

from __future__ import annotations

import pytest

from regdeploy.host_plan import HostRefused, plan_host
from regdeploy.host_state import HostState, Lock
from regdeploy.registry_plan import ServerState
from regdeploy.settings import validate_hosts

SHA = "ab" * 32


def fleet(**data):
    """A registry server `reg` and a client `c1`, both with `data`."""
    return validate_hosts([("reg", dict(data), {"registry_servers"}), ("c1", dict(data), {"docker_clients"})],
                          check_files=False)


def replicas():
    data = {"registry_storage": "s3", "registry_s3_bucket": "images", "registry_s3_access_key": "k"}
    return validate_hosts([("reg1", data, {"registry_servers"}), ("reg2", data, {"registry_servers"}),
                           ("lb", data, {"registry_lb"}), ("c1", data, {"docker_clients"})], check_files=False)


FRESH = HostState()  # nothing installed, no daemon.json
RUNNING = HostState(packages={"docker.io": True, "docker-cli": True, "apparmor": True, "curl": True},
                    active=True, enabled=True, daemon_json='{"insecure-registries": ["reg:5000"]}',
                    daemon_json_kind="present", daemon_json_detail="644", tools={"dockerd"})


@pytest.mark.parametrize("host,data,state,refusal", [
    ("c1", {}, HostState(lock=Lock(held=False, waited=600, holder="regdeploy on ctl (pid 7)")),
     "host 'c1': another regdeploy run holds this host's deploy lock (regdeploy on ctl (pid 7)); waited 600 s"),
    ("reg", {"docker_install_source": "none"}, FRESH,
     "host 'reg' is the registry server: it needs Docker (client_runtimes=[], docker_install_source='none')"),
    ("reg", {"client_runtimes": "podman"}, FRESH,
     "host 'reg' is the registry server: it needs Docker (client_runtimes=['podman']"),
    ("c1", {"docker_install_source": "none"}, FRESH,
     "host 'c1' has no container runtime regdeploy knows (Docker, containerd, Podman)"),
    ("c1", {}, HostState(daemon_json_kind="symlink", daemon_json_detail="/srv/daemon.json"), "c1"),
    ("c1", {}, HostState(daemon_json_kind="present", daemon_json_detail="644", daemon_json="{not json"), "c1"),
])
def test_a_refused_host_is_named_before_any_operation(host, data, state, refusal):
    with pytest.raises(HostRefused) as refused:
        plan_host(fleet(**data)[host], state)
    assert refusal in str(refused.value)
    assert "nothing was changed" in str(refused.value).lower() or "daemon.json" in str(refused.value)


@pytest.mark.parametrize("host,data,tools,runtimes", [
    ("c1", {}, set(), ("docker",)),  # regdeploy installs Docker
    ("c1", {"docker_install_source": "none"}, {"dockerd"}, ("docker",)),
    ("c1", {"docker_install_source": "none"}, {"containerd"}, ("containerd",)),
    ("c1", {"docker_install_source": "none"}, {"containerd", "podman"}, ("containerd", "podman")),
    # containerd under Docker is Docker's: left as it is.
    ("c1", {"docker_install_source": "none"}, {"dockerd", "containerd", "podman"}, ("docker", "podman")),
    ("c1", {"client_runtimes": "podman", "docker_install_source": "none"}, {"dockerd", "podman"}, ("podman",)),
    ("reg", {"docker_install_source": "none"}, {"dockerd"}, ("docker",)),
])
def test_the_runtimes_that_trust_the_registry(host, data, tools, runtimes):
    plan = plan_host(fleet(**data)[host], HostState(tools=tools))
    assert plan.runtimes == runtimes
    # daemon.json is planned exactly where Docker is one of them.
    assert (plan.daemon_json is not None) == plan.docker == ("docker" in runtimes)


def test_the_load_balancer_alone_gets_no_runtime_and_no_daemon_json():
    plan = plan_host(replicas()["lb"], FRESH)
    assert plan.runtimes == () and plan.daemon_json is None and plan.with_install is None


def test_a_fresh_docker_host_gets_daemon_json_with_the_install():
    plan = plan_host(fleet()["c1"], FRESH)
    assert plan.daemon_json is not None and plan.daemon_json.action is not None
    assert plan.with_install is not None and '"reg:5000"' in plan.with_install.before


def test_a_running_docker_host_that_trusts_the_registry_gets_nothing_new():
    plan = plan_host(fleet()["c1"], RUNNING)
    assert plan.daemon_json is not None and plan.daemon_json.action is None
    assert plan.with_install is None and plan.preload is None and plan.waited == 0


def test_a_lock_waited_for_is_reported():
    assert plan_host(fleet()["c1"], HostState(lock=Lock(held=True, waited=7))).waited == 7


@pytest.mark.parametrize("registry,preloaded", [
    (None, True),  # a fresh server: the archive rides on the Docker install
    (ServerState(), True),
    (ServerState(image_id="sha256:" + "0" * 64), False),  # the image is there: nothing to send
])
def test_the_image_archive_rides_on_a_servers_install_only_when_its_image_is_absent(registry, preloaded):
    settings = fleet(registry_image_archive="/srv/registry-2.tar", registry_image_archive_sha256=SHA)
    plan = plan_host(settings["reg"], HostState(registry=registry))
    assert (plan.preload is not None) == preloaded
    if plan.preload:
        assert plan.preload.src == "/srv/registry-2.tar" and plan.preload.sha256 == SHA
    # Clients never take it.
    assert plan_host(settings["c1"], FRESH).preload is None
