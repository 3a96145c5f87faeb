"""A host that ran regdeploy's registry and is no longer in registry_servers (a replica taken out):
what its next deploy does with that registry. Pure: the deploy (tasks/registry_retire.py) and the
tests feed it settings and the host's DockerHostState.

Only a host still in one of regdeploy's groups is reached; one taken out of the inventory altogether
is left alone (the load balancers stop sending it requests, since their configuration lists the
replicas). With registry_lb_mode=ipvs it is drained on them first (tasks/registry_lb.hold_lb_address).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from .registry_files import TOKEN_UNIT

LABEL = "former_registry"
RETIRED_SUFFIX = ".regdeploy-retired"


def config_path(settings) -> str:
    """The config.yml regdeploy keeps beside the registry it runs: present only where it ran one."""
    return posixpath.join(settings.registry_config_dir, "config.yml")


def fact_checks(settings) -> tuple:
    """On every host that is no registry server: whether it was one (regdeploy's config.yml is there)."""
    return () if settings.is_server else (("file", LABEL, config_path(settings)),)


@dataclass(frozen=True)
class Retirement:
    """`stop`: stop its registry, keep the container and data; `keep`: leave it running (said why)."""

    stop: bool
    message: str


def retirement(settings, state) -> Retirement | None:
    """None for a host that never ran regdeploy's registry (or is a server)."""
    if settings.is_server or LABEL not in state.files:
        return None
    path, name = config_path(settings), settings.registry_container_name
    where = f"host {settings.host_name!r} ran regdeploy's registry ({path}) and is no longer in " \
            f"{settings.registry_servers_group!r}"
    if settings.registry_storage != "s3":
        # Its images are on its own disk: stopping it would take them out of reach.
        return Retirement(False, f"{where}: its registry keeps running, since the images on its disk are served "
                                 f"nowhere else. To move them, put it back in {settings.registry_servers_group!r} "
                                 f"for `regdeploy backup`, `regdeploy restore` them onto the new server, then stop "
                                 f"container {name!r} by hand")
    return Retirement(True, f"{where}: its registry container {name!r} stops and stays (restart policy no), "
                            f"the images stay in the bucket, {path} becomes {path}{RETIRED_SUFFIX}")


def lb_replica_args(settings) -> dict:
    """lb-replica.sh's variables for a former replica (no status pages: with registry_lb_mode=ipvs, the
    REJECT of the load balancers' checks; without, nothing of it is used)."""
    from .load_balancer import LB_BACKEND, replica_drain, server_name
    from .registry_files import DRAIN_SECONDS
    from .registry_plan import CONTAINER_PORT

    return dict(lb_ipvs=replica_drain(settings, CONTAINER_PORT), lb_stats_urls=(),
                lb_server=server_name(settings.host_name), lb_backend=LB_BACKEND, drain_seconds=DRAIN_SECONDS,
                timeout=settings.registry_ready_timeout)


def retire_script_args(settings) -> dict:
    """retire-registry.sh's variables; with registry_lb_mode=ipvs, lb-replica.sh's too: the REJECT of the
    load balancers' checks that drained it goes once it is stopped."""
    path = config_path(settings)
    return dict(name=settings.registry_container_name, config=path, retired=path + RETIRED_SUFFIX,
                token_unit=f"{TOKEN_UNIT}.service", **lb_replica_args(settings))
