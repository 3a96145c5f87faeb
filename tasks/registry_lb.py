"""The registry_lb hosts: haproxy from the distribution in front of the registry replicas, and with
registry_lb_vip keepalived, which moves that address between them."""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import deploy, operation
from pyinfra.api.exceptions import DeployError
from pyinfra.operations import apt, server

from regdeploy import load_balancer, retire, security
from regdeploy.rendering import render
from regdeploy.settings import Settings
from regdeploy.host_state import HostState

from .host_files import put_if_changed


@deploy("Run the registry's load balancer")
def run_load_balancer(settings: Settings, state: HostState) -> None:
    """`state` is the host's DockerHostState fact (its `packages`, `files`, `running`, `enabled_units`
    and `lines`)."""
    try:
        plan = load_balancer.lb_plan(settings, state, security.tls_material(settings))
    except load_balancer.NoInterface as exc:
        raise DeployError(f"host {settings.host_name!r}: {exc}, its ssh_hostname: keepalived sends VRRP from that "
                         "address; set ssh_hostname to its IPv4 address on registry_lb_vip's network") from None
    if plan.missing:
        apt.packages(name=f"Install {', '.join(plan.missing)}", packages=list(plan.missing), update=True)
    # registry_tls: haproxy ends TLS with the registry's certificate (its key travels on stdin).
    for file in plan.tls:
        put_if_changed(file.path, file.content, state.files.get(file.label),
                       f"Install haproxy's {'certificate and key' if file.secret else 'CA'} {file.path}",
                       mode=file.mode, secret=file.secret, dir_mode="755")
    # registry_lb_cache: the cache's password (on stdin) and flush script; then redis (the replicas use it
    # once their config says so), haproxy, then keepalived (its check asks haproxy, its takeover empties
    # the cache). One call site each: pyinfra names an operation by where it is called from, and one line
    # in a loop would make one operation of different services on different hosts.
    cache = {file.label: file for file in plan.cache}
    steps = {step.service: step for step in plan.steps}
    # registry_lb_mode=ipvs: the replicas' check, then the kernel's setting (the module loaded first).
    ipvs = {file.label: file for file in plan.ipvs}
    for label in ("ipvs_check", "ipvs_sysctl", "ipvs_modules"):
        if label in ipvs:
            _put_ipvs_file(state, ipvs[label])
    if plan.kernel:
        host.log(f"Will load ip_vs and apply {load_balancer.IPVS_SYSCTL_PATH}: {'; '.join(plan.kernel)}")
        server.shell(name=f"Load ip_vs and apply {load_balancer.IPVS_SYSCTL_PATH}",
                     commands=[f"modprobe ip_vs && sysctl -q -p {shlex.quote(load_balancer.IPVS_SYSCTL_PATH)}"])
    if "cache_auth" in cache:
        _put_cache_file(state, cache["cache_auth"])
    if "cache_flush" in cache:
        _put_cache_file(state, cache["cache_flush"])
    if "redis-server" in steps:
        _apply(settings, steps["redis-server"])
    if "haproxy" in steps:
        _apply(settings, steps["haproxy"])
    if "keepalived" in steps:
        _apply(settings, steps["keepalived"])
    # registry_lb_mode=ipvs: haproxy an earlier run started has nothing to do (IPVS takes the address's
    # connections before any socket); stopped once keepalived runs IPVS.
    if plan.stop_haproxy:
        host.log("Will stop and disable haproxy: registry_lb_mode is ipvs")
        server.shell(name="Stop and disable haproxy (registry_lb_mode is ipvs)",
                     commands=["systemctl disable --now haproxy.service"])
    # Without registry_tls (haproxy no longer reads them, its new configuration is loaded above).
    if plan.stale:
        host.log(f"Will remove {', '.join(plan.stale)}: TLS no longer ends here")
        server.shell(name=f"Remove haproxy's TLS files {', '.join(plan.stale)}",
                     commands=[f"rm -f {' '.join(shlex.quote(p) for p in plan.stale)}"])


@operation(is_idempotent=True)
def _ordering_point():
    """Nothing to do on a host: an operation every host of the fleet shares (one call site), so pyinfra
    runs every operation before it on any host before any operation after it."""
    return
    yield


def load_balancers_first() -> None:
    """Every host of a fleet with load balancers calls this right after their operations: a replica
    waits on the load balancers' status pages when its registry (re)starts, and a former replica stops
    only once they no longer send it requests. pyinfra orders each host's operations, but those of
    different hosts only by their rank in each host's list and then by line: without this, a
    load balancer with more to do than a replica (a first deploy: packages, files, three services)
    would be configured after the replica's registry started waiting for it."""
    _ordering_point(name="The load balancers are configured before any registry (re)starts")


def hold_lb_address(settings: Settings, state: HostState) -> None:
    """A replica behind IPVS holds registry_lb_vip on its loopback (load_balancer.replica_address_plan);
    any other host of the fleet gives up one an earlier run put there."""
    plan = load_balancer.replica_address_plan(settings, state)
    for file in plan.files:
        put_if_changed(file.path, file.content, state.files.get(file.label), f"Install {file.path}", mode=file.mode)
    if plan.apply:
        host.log(f"Will hold {settings.vip_address} on the loopback: {'; '.join(plan.reasons)}")
        server.shell(name="Hold the load balancers' address on the loopback, without answering ARP for it",
                     commands=[plan.apply])
    elif settings.ipvs and settings.is_server:
        host.noop(f"the loopback holds {settings.vip_address}")
    # A former replica (registry_lb_mode=ipvs) leaves the load balancers drained, before they drop it
    # from IPVS (which ends its connections); retire_registry stops it after them.
    leaving = retire.retirement(settings, state)
    if settings.ipvs and leaving is not None and leaving.stop:
        host.log("Will drain it on the load balancers before they drop it from IPVS")
        server.shell(name="Drain the former replica on the load balancers before they drop it",
                     commands=[render("drain-former-replica.sh.j2", name=settings.registry_container_name,
                                      **retire.lb_replica_args(settings))])
    if plan.remove or plan.retire:
        host.log(f"Will give up {', '.join(plan.remove) or 'no address'} on the loopback"
                 + (f" and remove {load_balancer.REPLICA_UNIT}" if plan.retire else ""))
        server.shell(name="Give up the load balancers' address on the loopback",
                     commands=[render("remove-lb-address.sh.j2", remove=plan.remove, retire=plan.retire,
                                      unit=load_balancer.REPLICA_UNIT, unit_path=load_balancer.REPLICA_UNIT_PATH,
                                      sysctl=load_balancer.REPLICA_SYSCTL_PATH)])


def replicas_hold_address_first() -> None:
    """Every host of a fleet with load balancers calls this right after hold_lb_address: IPVS must
    forward a connection only to a replica that holds the address it is for (one that does not would
    route it back out)."""
    _ordering_point(name="The replicas hold the load balancers' address before IPVS forwards to them")


def _put_ipvs_file(state: HostState, file: load_balancer.TlsFile) -> None:
    put_if_changed(file.path, file.content, state.files.get(file.label), f"Install {file.path}", mode=file.mode)


def _put_cache_file(state: HostState, file: load_balancer.TlsFile) -> None:
    put_if_changed(file.path, file.content, state.files.get(file.label),
                   f"Install the blob-descriptor cache's {'password' if file.secret else 'flush script'} {file.path}",
                   mode=file.mode, secret=file.secret, group=file.group)


def _apply(settings: Settings, step: load_balancer.ServiceStep) -> None:
    if not step.reasons:
        host.noop(f"{step.service} runs as configured" + (
            f" ({len(settings.replicas)} replicas)" if step.service == "haproxy" else ""))
        return
    host.log(f"Will write {step.path}, enable and (re)load {step.service}: {'; '.join(step.reasons)}")
    server.shell(name=f"Write {step.path}, enable and (re)load {step.service}",
                 commands=[render("apply-lb-config.sh.j2", path=step.path, content=step.content,
                                  service=step.service, check=step.check, check_passes=step.check_passes,
                                  wait_url=step.wait_url)])
