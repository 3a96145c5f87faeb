"""The pull-through cache (registry_proxy_remote_url): a second registry container on the server,
read-only, that fetches from the upstream once and serves what it fetched again, also while the
upstream is down. Every Docker host lists it in registry-mirrors (tasks/docker_client.py).

It is the registry's own machinery run a second time (settings.cache_settings: its name, port,
storage, cache.yml), so it gets the same plan, drift detection, readiness gate and rollback.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server

from regdeploy.registry_plan import ServerState
from regdeploy.settings import Settings, cache_settings
from regdeploy.host_state import HostState
from .registry_server import run_registry


@deploy("Run the pull-through cache")
def run_registry_cache(settings: Settings, state: HostState, preloaded: bool = False) -> None:
    """`state`: the server's DockerHostState fact; `preloaded`: the image archive came with the Docker
    install (the cache runs the registry's image)."""
    cache = cache_settings(settings)
    if settings.registry_proxy_remote_url:
        run_registry(cache, state.cache or ServerState(), preloaded)
        return
    registry: ServerState = state.registry or ServerState()
    config_left = "cache_config" in state.files
    if not (registry.cache_left or config_left):
        host.noop("no pull-through cache is configured, and none is there")
        return
    # Its storage is kept, as regdeploy keeps every registry's data; cache.yml goes (it may hold the
    # upstream's password).
    name = settings.registry_proxy_container_name
    commands = [f"docker rm -f {shlex.quote(name)} >/dev/null"] if registry.cache_left else []
    commands += [f"rm -f {shlex.quote(cache.registry_config_path)}"] if config_left else []
    server.shell(name=f"Remove the pull-through cache {name!r} (registry_proxy_remote_url is empty; its data in "
                      f"{settings.registry_proxy_data_dir} stays)", commands=commands)
