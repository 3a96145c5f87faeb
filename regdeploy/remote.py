"""Reach an inventory host as the deploy reaches it: pyinfra's own connector, fed the host's inventory
data, so the regdeploy command (gc, backup, restore, copy) honours everything `pyinfra INVENTORY
deploy.py` does: `ssh_port`, `ssh_user`, `ssh_key` and `ssh_key_password`, `ssh_password`, a jump
host (`ssh_config_file`, `ssh_paramiko_connect_kwargs`), `_sudo`, `_sudo_user`, `_sudo_password`,
`_su_user` and the rest of pyinfra's connector arguments.

A script's stdin and stdout are streamed as bytes (a backup's tar, a restore's), its stderr is
passed through to ours; the exit status comes back as is.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import IO, Any, Callable, Iterator

from pyinfra.api import Config, Host, QuoteString, State, StringCommand
from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS, pop_global_arguments
from pyinfra.api.exceptions import ConnectError
from pyinfra.connectors.util import make_unix_command_for_host
from pyinfra.context import ctx_state
from pyinfra_cli import util as pyinfra_cli_util
from pyinfra_cli.inventory import make_inventory

CHUNK = 1 << 16


class Unreachable(Exception):
    """The host could not be reached (name, address, port, network)."""


class AuthRefused(Exception):
    """The host refused the login (user, key, password)."""


@dataclass
class Connection:
    """One connected inventory host; `run` runs a shell script there as the deploy's commands run."""

    state: State
    host: Host

    @property
    def name(self) -> str:
        return self.host.name

    def command(self, script: str) -> str:
        """`sh -c SCRIPT` wrapped as pyinfra wraps an operation's command on this host (sudo, su, env)."""
        arguments, _ = pop_global_arguments(self.state, self.host, {})
        given: dict[str, Any] = dict(arguments)
        connector_arguments = {key: given[key] for key in CONNECTOR_ARGUMENT_KEYS if key in given}
        for key in ("_get_pty", "_stdin", "_timeout", "_success_exit_codes"):
            connector_arguments.pop(key, None)
        command = StringCommand("sh", "-c", QuoteString(script))
        return make_unix_command_for_host(self.state, self.host, command, **connector_arguments).get_raw_value()

    def run(self, script: str, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None,
            progress: Callable[[int], None] | None = None) -> int:
        """Run `script`, feeding it `stdin` and writing its output to `stdout` (both as bytes; stdout
        None: ours); its stderr goes to ours. `progress` is told the bytes streamed so far, either way."""
        command = self.command(script)
        client = getattr(self.host.connector, "client", None)
        if client is not None:
            return _run_over_paramiko(client, command, stdin, stdout or sys.stdout.buffer, progress)
        if type(self.host.connector).__name__ == "LocalConnector":
            return _run_locally(command, stdin, stdout or sys.stdout.buffer, progress)
        raise Unreachable(f"host {self.name!r}: regdeploy reaches hosts over SSH or @local; this one uses "
                          f"pyinfra's {type(self.host.connector).__name__}")


def _run_over_paramiko(client, command: str, stdin, stdout, progress) -> int:
    import gevent

    channel = client.get_transport().open_session()
    channel.exec_command(command)
    moved = [0]

    def feed() -> None:
        try:
            if stdin is not None:
                while block := stdin.read(CHUNK):
                    channel.sendall(block)
                    moved[0] += len(block)
                    if progress:
                        progress(moved[0])
        except OSError:
            pass  # the script ended without reading it all: its exit status says why
        finally:
            channel.shutdown_write()

    feeder = gevent.spawn(feed)
    while True:
        if channel.recv_stderr_ready():
            sys.stderr.buffer.write(channel.recv_stderr(CHUNK))
            sys.stderr.flush()
            continue
        if channel.recv_ready():
            block = channel.recv(CHUNK)
            stdout.write(block)
            if stdin is None:
                moved[0] += len(block)
                if progress:
                    progress(moved[0])
            continue
        if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
            break
        gevent.sleep(0.01)
    feeder.join()
    stdout.flush()
    status = channel.recv_exit_status()
    channel.close()
    return status


def _run_locally(command: str, stdin, stdout, progress) -> int:
    process = subprocess.Popen(["sh", "-c", command], stdin=subprocess.PIPE if stdin is not None else
                               subprocess.DEVNULL, stdout=subprocess.PIPE)
    assert process.stdout is not None
    if stdin is not None:
        assert process.stdin is not None
        into = process.stdin
        import threading

        def feed() -> None:
            moved = 0
            try:
                while block := stdin.read(CHUNK):
                    into.write(block)
                    moved += len(block)
                    if progress:
                        progress(moved)
            except OSError:
                pass
            finally:
                into.close()

        threading.Thread(target=feed, daemon=True).start()
    moved = 0
    while block := process.stdout.read(CHUNK):
        stdout.write(block)
        if stdin is None:
            moved += len(block)
            if progress:
                progress(moved)
    stdout.flush()
    return process.wait()


@contextlib.contextmanager
def connect(inventory_path: str, name: str) -> Iterator[Connection]:
    """A connection of its own to inventory host `name` (the host's deploy lock belongs to the
    connection: this one is never shared with a deploy's)."""
    state = State()
    ctx_state.set(state)
    path = os.path.abspath(inventory_path)
    pyinfra_cli_util.PYTHON_CODES.pop(path, None)
    inventory = make_inventory(path, cwd=os.getcwd())
    state.init(inventory, Config())
    host = inventory.get_host(name)
    try:
        host.connect(show_errors=False, raise_exceptions=True)
    except ConnectError as exc:
        message = f"host {name!r}: cannot connect: {exc}"
        raise (AuthRefused if "Authentication error" in str(exc) else Unreachable)(message) from None
    try:
        yield Connection(state, host)
    finally:
        host.disconnect()
        # pyinfra's SSH connector keeps its paramiko client: close it, so the host's sshd (and the
        # deploy lock tied to it) sees the connection end now.
        client = getattr(host.connector, "client", None)
        if client is not None:
            client.close()
