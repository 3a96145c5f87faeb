"""regdeploy's deploy, as a function pyinfra can run or a deploy file can call.

    pyinfra -y INVENTORY regdeploy.deploys.registry     # installed with pip, from any directory
    pyinfra -y inventory.py deploy.py                   # a checkout: deploy.py calls registry()

or, next to a user's own operations in their deploy file::

    from regdeploy.deploys import registry
    registry()

Only the hosts in regdeploy's groups (registry_servers, docker_clients, registry_lb, or the names
registry_servers_group, docker_clients_group and registry_lb_group give them) are touched: every other
inventory host is listed once as left alone, and gets no fact and no operation. Every host's data in
those groups is validated before any operation is generated, so bad data changes nothing.
"""

from __future__ import annotations

from pyinfra import host, inventory, logger
from pyinfra.api.exceptions import DeployError

from . import deploy_lock
from .facts import DockerHostState, host_state_arguments
from .host_plan import HostRefused, plan_host
from .settings import ConfigError, Settings, from_inventory, left_alone
from .tasks.docker_client import trust_registry
from .tasks.docker_engine import install_docker
from .tasks.host_files import record_version
from .tasks.registry_cache import run_registry_cache
from .tasks.registry_gc import schedule_gc
from .tasks.registry_lb import hold_lb_address, load_balancers_first, replicas_hold_address_first, run_load_balancer
from .tasks.registry_login import log_in_to_registry
from .tasks.registry_retire import retire_registry
from .tasks.registry_security import drop_previous_passwords, install_registry_secrets, remove_unused_secrets
from .tasks.registry_seed import seed_registry
from .tasks.registry_server import run_registry
from .tasks.registry_token import remove_token_service, run_token_service
from .tasks.runtime_clients import trust_registry_containerd, trust_registry_podman

# The inventories whose hosts left alone were already listed (pyinfra calls registry() once per host).
_listed: set[int] = set()


def registry() -> None:
    """Provision the current host for its role: the registry server (or a replica), the load
    balancer, a client of the registry; a host in none of regdeploy's groups is left alone."""
    try:
        fleet = from_inventory(inventory)
    except ConfigError as exc:
        raise DeployError(str(exc)) from None
    if id(inventory) not in _listed:
        _listed.add(id(inventory))
        message = left_alone([h.name for h in inventory], fleet)
        if message:
            logger.info(message)
    settings = fleet.get(host.name)
    if settings is None:
        return
    _provision(settings)


def _provision(settings: Settings) -> None:
    # The one fact a host costs (pyinfra 3 runs a fact's command on every call, so it is read once and
    # passed down): it takes the host's deploy lock, held until this run's SSH connection to the host
    # ends, and reads Docker, daemon.json, the secure modes' files and, on the server, the registry.
    state = host.get_fact(DockerHostState, **host_state_arguments(settings, deploy_lock.holder("regdeploy deploy")))
    try:
        plan = plan_host(settings, state)
    except HostRefused as exc:
        raise DeployError(str(exc)) from None
    if plan.waited:
        host.log(f"waited {plan.waited} s for another regdeploy run on this host to finish", log_func=logger.warning)
    preloaded = False
    if plan.daemon_json:  # a Docker host
        preloaded = install_docker(settings, state, plan.preload, plan.with_install)
        trust_registry(settings, state, plan.daemon_json, with_install=bool(plan.with_install))
    if "containerd" in plan.runtimes:
        trust_registry_containerd(settings, state)
    if "podman" in plan.runtimes:
        trust_registry_podman(settings, state)
    # With ipvs, the replicas hold the load balancers' address before IPVS sends them connections.
    if settings.lbs and not settings.is_lb:
        hold_lb_address(settings, state)
    if settings.ipvs:
        replicas_hold_address_first()
    # The load balancer first: a replica being replaced waits until haproxy sends it requests again.
    if settings.is_lb:
        run_load_balancer(settings, state)
    if settings.lbs:
        load_balancers_first()
    # A former replica stops only after that: the load balancers no longer send it requests.
    if not settings.is_server:
        retire_registry(settings, state)
    if settings.is_server:
        install_registry_secrets(settings, state)
        if settings.registry_access:
            run_token_service(settings, state)
        run_registry(settings, state.registry, preloaded)
        run_registry_cache(settings, state, preloaded)
    # pyinfra orders operations by their place here: every host logs in once the registry runs.
    if plan.docker or "podman" in plan.runtimes or "containerd" in plan.runtimes:
        log_in_to_registry(settings, state, docker=bool(plan.docker), podman="podman" in plan.runtimes,
                           containerd="containerd" in plan.runtimes)
    if settings.is_server:
        if settings.registry_auth:
            drop_previous_passwords(settings, state)
        if not settings.registry_access:
            remove_token_service(settings, state)
        remove_unused_secrets(settings, state)
        if settings.first_replica:
            # Replicas share their storage: one pushes the seed images for all.
            seed_registry(settings)
        schedule_gc(settings, state)
    # Last: a host records this version only once the rest of its deploy has been generated.
    record_version(state)
