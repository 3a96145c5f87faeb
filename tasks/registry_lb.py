"""The registry_lb host: haproxy from the distribution in front of the registry replicas."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import apt, server

from regdeploy import load_balancer
from regdeploy.rendering import render
from regdeploy.settings import Settings
from regdeploy.host_state import HostState, file_matches


@deploy("Run the registry's load balancer")
def run_load_balancer(settings: Settings, state: HostState) -> None:
    """`state` is the host's DockerHostState fact (its `packages` and `files`)."""
    config = load_balancer.haproxy_config(settings)
    installed = all(state.packages.get(name) for name in load_balancer.PACKAGES)
    if not installed:
        apt.packages(name="Install haproxy", packages=list(load_balancer.PACKAGES), update=True)
    if installed and file_matches(state.files.get("haproxy_cfg"), config, "644"):
        host.noop(f"haproxy sends to {len(settings.replicas)} replicas as configured")
        return
    host.log(f"Will write {load_balancer.CONFIG_PATH} ({len(settings.replicas)} replicas) and reload haproxy")
    server.shell(name=f"Write {load_balancer.CONFIG_PATH} and reload haproxy",
                 commands=[render("apply-haproxy.sh.j2", path=load_balancer.CONFIG_PATH, content=config,
                                  stats_port=settings.registry_lb_stats_port)])
