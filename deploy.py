"""regdeploy: `pyinfra inventory.py deploy.py`.

Every host gets Docker and trusts the registry (the server too, so `<server>:<port>/...` names
work on it); the host in `registry_servers` also runs the registry, or each of several replicas on
shared storage does, behind haproxy on the `registry_lb` host. All inventory data is validated for
every host before any operation is generated, so bad data changes nothing.
"""

import os
import sys

from pyinfra import host, inventory, logger
from pyinfra.api.exceptions import DeployError

# pyinfra turns Python's bytecode cache off for everything it runs (sys.dont_write_bytecode), so
# regdeploy's modules would be compiled anew on every run: ~60 ms of the controller's CPU before the
# first host is asked anything. They are cached as Python does by default, unless the operator said no.
if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
    sys.dont_write_bytecode = False

from regdeploy import deploy_lock, registry_files, runtimes  # noqa: E402 (after the cache is back on)
from regdeploy.facts import DockerHostState
from regdeploy.settings import ConfigError, from_inventory
from tasks.docker_client import plan_trust, trust_registry, with_install
from tasks.docker_engine import install_docker, installs_engine, packages_to_check
from tasks.registry_login import log_in_to_registry
from tasks.registry_cache import cache_facts, run_registry_cache
from tasks.registry_gc import schedule_gc
from tasks.registry_lb import run_load_balancer
from tasks.registry_security import install_registry_secrets, remove_unused_secrets
from tasks.registry_seed import seed_registry
from tasks.registry_server import image_preload, registry_facts, run_registry
from tasks.runtime_clients import trust_registry_containerd, trust_registry_podman

try:
    settings = from_inventory(inventory)[host.name]
except ConfigError as exc:
    raise DeployError(str(exc)) from None

# The one fact a host costs (pyinfra 3 runs a fact's command on every call, so it is read once and
# passed down): it takes the host's deploy lock, held until this run's SSH connection to the host
# ends, and reads Docker, daemon.json, the secure modes' files and, on the server, the registry.
state = host.get_fact(DockerHostState, path=settings.docker_daemon_json,
                      packages=tuple(packages_to_check(settings)), lock=deploy_lock.LOCK_PATH,
                      holder=deploy_lock.holder("regdeploy deploy"),
                      lock_timeout=settings.deploy_lock_timeout,
                      checks=registry_files.fact_checks(settings),
                      registry=registry_facts(settings) if settings.is_server else None,
                      **(cache_facts(settings) if settings.is_server else {}))
lock = state["lock"]
if lock and not lock["held"]:
    raise DeployError(f"host {host.name!r}: another regdeploy run holds this host's deploy lock ({lock['holder']}); "
                      f"waited {lock['waited']} s (deploy_lock_timeout). Nothing was changed: run again once it "
                      "has finished.")
if lock and lock["waited"]:
    host.log(f"waited {lock['waited']} s for another regdeploy run on this host to finish", log_func=logger.warning)
# Which runtimes on this host must trust the registry (client_runtimes, or what is there); none on a
# host that is only the load balancer.
host_runtimes = runtimes.resolve(settings.client_runtimes, settings.docker_install_source, state["tools"]) \
    if settings.uses_registry else []
if settings.is_server and "docker" not in host_runtimes:
    raise DeployError(f"host {host.name!r} is the registry server: it needs Docker (client_runtimes={host_runtimes}, "
                      f"docker_install_source={settings.docker_install_source!r}); nothing was changed")
if settings.uses_registry and not host_runtimes:
    raise DeployError(f"host {host.name!r} has no container runtime regdeploy knows (Docker, containerd, Podman) and "
                      "docker_install_source is 'none': install one, or let regdeploy install Docker; nothing was changed")
preloaded = False
if "docker" in host_runtimes:
    daemon_json = plan_trust(settings, state)
    # On a fresh host daemon.json goes in before the install, as the manual does it: no reload after.
    early = with_install(settings, state, daemon_json, installs_engine(settings, state))
    # A server installing Docker receives its image archive while the clients install theirs.
    preloaded = install_docker(settings, state, image_preload(settings, state["registry"]) if settings.is_server
                               else None, early)
    trust_registry(settings, state, daemon_json, with_install=bool(early))
if "containerd" in host_runtimes:
    trust_registry_containerd(settings, state)
if "podman" in host_runtimes:
    trust_registry_podman(settings, state)
# The load balancer first: a replica being replaced waits until haproxy sends it requests again.
if settings.is_lb:
    run_load_balancer(settings, state)
if settings.is_server:
    install_registry_secrets(settings, state)
    run_registry(settings, state["registry"], preloaded)
    run_registry_cache(settings, state, preloaded)
# pyinfra orders operations by their place here: every host logs in once the registry runs.
if "docker" in host_runtimes:
    log_in_to_registry(settings, state)
if settings.is_server:
    remove_unused_secrets(settings, state)
    if settings.first_replica:
        # Replicas share their storage: one pushes the seed images for all.
        seed_registry(settings)
    schedule_gc(settings, state)
