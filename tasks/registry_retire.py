"""A host taken out of registry_servers that still is in regdeploy's groups: its registry stops, its
data stays (regdeploy/retire.py decides)."""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.operations import server

from regdeploy import retire
from regdeploy.host_state import HostState
from regdeploy.rendering import render
from regdeploy.settings import Settings


@deploy("Retire a former registry replica")
def retire_registry(settings: Settings, state: HostState) -> None:
    decision = retire.retirement(settings, state)
    if decision is None:
        return
    if not decision.stop:
        host.log(decision.message, log_func=logger.warning)
        return
    host.log(f"Will stop: {decision.message}")
    server.shell(name=f"Stop the registry container {settings.registry_container_name!r}, keep it and its data",
                 commands=[render("retire-registry.sh.j2", **retire.retire_script_args(settings))])
