"""Write one file on a host when the DockerHostState fact says it differs: content, mode or owner."""

from __future__ import annotations

from pyinfra import host
from pyinfra.operations import server

from regdeploy import __version__, managed
from regdeploy.rendering import render
from regdeploy.host_state import HostState, file_matches


def put_if_changed(path: str, content: str, found: str | None, name: str, mode: str = "644",
                   secret: bool = False, dir_mode: str = "", group: str = "root") -> bool:
    """`found`: the fact's "SHA256 MODE OWNER" for `path` (None: absent). A `secret` travels on the
    command's stdin, never in its text (the process list, pyinfra's output). True if it is written."""
    if file_matches(found, content, mode):
        return False
    host.log(f"Will {'replace' if found else 'create'} {path}")
    server.shell(name=name, commands=[render("put-file.sh.j2", path=path, mode=mode, dir_mode=dir_mode,
                                             group=group, content=None if secret else content)],
                 _stdin=content if secret else None)
    return True


def record_version(state: HostState) -> None:
    """The deploy's last step on every host: which regdeploy version it was (managed.PATH), when the
    record says another (or none)."""
    record = managed.plan_version_record(state.lines.get("managed_by"), __version__)
    if not record.write:
        host.noop(record.reason)
        return
    host.log(f"Will record: {record.reason}")
    server.shell(name="Record regdeploy's version", commands=[
        render("put-file.sh.j2", path=managed.PATH, mode="644", dir_mode="", content=record.content)])
