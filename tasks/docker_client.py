"""Make a host's Docker trust the registry: merge daemon.json, apply it with the least disruption."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.operations import server

from regdeploy import daemon_config
from regdeploy.facts import DockerdCanValidate
from regdeploy.rendering import render
from regdeploy.settings import Settings


@deploy("Trust the registry in Docker's daemon.json")
def trust_registry(settings: Settings, state: dict) -> None:
    """`state` is the host's DockerHostState fact."""
    path = settings.docker_daemon_json
    where = f"host {host.name!r}: {path}"

    conflicts = state["command_line_registries"]
    if conflicts:
        raise DeployError(
            f"{where}: dockerd already gets --insecure-registry on its command line "
            f"({conflicts[0]}); Docker refuses to start when an option is set in both places. "
            "Move those registries into daemon.json (or remove the flag) and run the deploy again."
        )
    kind, detail = state["daemon_json_kind"], state["daemon_json_detail"]
    if kind == "symlink":
        raise DeployError(f"{where} is a symbolic link to {detail}; regdeploy replaces daemon.json atomically and "
                          "would turn the link into a file. Set docker_daemon_json to the link's target (or make "
                          "it a regular file) and run again; nothing was changed.")
    if kind == "other":
        raise DeployError(f"{where} is a {detail}, not a regular file; fix it by hand and run again; "
                          "nothing was changed.")
    if kind == "present" and not int(detail or "644", 8) & 0o400:
        raise DeployError(f"{where} has mode {int(detail, 8):03o}: even its owner may not read it, so someone locked it "
                          f"on purpose. If Docker should use it, `chmod 644 {path}` and run again; nothing was changed.")
    try:
        current = daemon_config.parse(state["daemon_json"], where)
        daemon_config.check_mergeable(current, where, settings.registry_mirrors)
    except daemon_config.DaemonConfigError as exc:
        raise DeployError(str(exc)) from None

    merged = daemon_config.merge(current, settings.registry_address, settings.registry_mirrors)
    trusts = not state["active"] or state["trusted"] is None or settings.registry_address in state["trusted"]
    action = daemon_config.apply_action(current, merged, daemon_trusts=trusts)
    if action is None:
        host.noop(f"{path} lists {settings.registry_address} and dockerd trusts it")
        return
    if not host.get_fact(DockerdCanValidate):
        unknown = daemon_config.unknown_keys(merged)
        if unknown:
            raise DeployError(f"{where}: unknown daemon.json keys {unknown}: dockerd would refuse "
                              "to start. Fix the file by hand; regdeploy leaves it untouched.")

    server.shell(
        name=f"Write the merged {path}, {action} Docker and confirm it trusts {settings.registry_address}",
        commands=[render("apply-daemon-json.sh.j2", path=path, action=action,
                         registry=settings.registry_address, content=daemon_config.render(merged),
                         insecure_registries_format=daemon_config.INSECURE_REGISTRIES_FORMAT)],
    )
