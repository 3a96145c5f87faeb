"""regdeploy's own pyinfra operations: each turns what a plan decided into the commands of one
operation (one round trip for the whole fleet), and is tested by comparing the commands it yields."""

from __future__ import annotations

import posixpath
import shlex

import gevent
from pyinfra import host, logger
from pyinfra.api import FunctionCommand, QuoteString, StringCommand, operation
from pyinfra.facts.apt import noninteractive_apt
from pyinfra.operations import files

from .docker_packages import START_DOCKER, DaemonJsonWithInstall, Preload
from .rendering import render


@operation()
def install_and_start(packages: list[str], preload: Preload | None = None,
                      daemon_json: DaemonJsonWithInstall | None = None):
    """apt-get update and install `packages` (the missing ones, from the fact), then start Docker and
    enable it at boot, in one operation: each operation waits for every host, so one more would cost the
    whole fleet a round trip. `preload`: sent and checked while apt runs, used once Docker runs.
    `daemon_json`: written before apt, confirmed once Docker runs."""
    # A random name in the login user's temporary directory: none another user could have prepared.
    upload = BackgroundUpload(preload.src, host.get_temp_filename(), preload.sha256) if preload else None
    if upload:
        yield FunctionCommand(upload.start, (), {})
    yield StringCommand(render(
        "install-docker.sh.j2", before=daemon_json.before if daemon_json else "",
        install=noninteractive_apt(f"install {' '.join(shlex.quote(p) for p in packages)}"),
        after=daemon_json.after if daemon_json else START_DOCKER).strip())
    if upload and preload:
        yield FunctionCommand(upload.finish, (), {})
        directory = posixpath.dirname(preload.dest)
        # Moved into place and loaded in one command: one round trip fewer on the server's path.
        yield StringCommand("mkdir", "-p", QuoteString(directory), "&&", "mv", "-f",
                            QuoteString(upload.temp), QuoteString(preload.dest), "&&", "chown", "0:0",
                            QuoteString(preload.dest), "&&", "chmod", "600", QuoteString(preload.dest),
                            "||", "exit", "1", "\n" + preload.load)


class BackgroundUpload:
    """A file sent over its own SFTP channel while the operation's commands run on the same connection
    (pyinfra runs a host's commands one at a time; its connections are gevent-friendly): the registry
    image archive travels during the server's apt-get, as it would beside a by-hand install. It goes
    to the login user's temporary directory (SFTP never runs through sudo), is checked there against
    its SHA-256 on a channel of its own (the file is the login user's: no sudo needed), still during
    apt; a command moves it."""

    def __init__(self, src: str, temp: str, sha256: str):
        self.src, self.temp, self.sha256 = src, temp, sha256
        self._greenlet: gevent.Greenlet | None = None

    def start(self, state, host) -> bool:
        self._greenlet = gevent.spawn(self._send, host)
        return True

    def _send(self, host) -> str | None:
        """None when sent and checked, else what went wrong."""
        if not host.put_file(self.src, self.temp):
            return f"could not upload {self.src} to {self.temp}"
        ok, output = host.run_shell_command(StringCommand(render("check-archive.sh.j2", archive=self.temp,
                                                                 sha256=self.sha256)))
        return None if ok else output.stderr or f"{self.temp} does not match SHA-256 {self.sha256}"

    def finish(self, state, host) -> bool:
        assert self._greenlet is not None
        error = self._greenlet.get()
        if error:
            host.log(error, log_func=logger.error)
            return False
        return True


@operation()
def start_registry(data_dir: str = "", config: tuple[str, str, str, bool] | None = None,
                   archive: Preload | None = None, image_present: bool = True, pull: str = "", script: str = "",
                   script_stdin: str | None = None):
    """The server's registry steps (RegistrySteps), in order: `data_dir` to create, `config` (text, path,
    mode, secret?) to write, `archive` to upload and load, `pull`, and the run-registry `script` (with
    `script_stdin`, a secret for it)."""
    mkdir = StringCommand("mkdir", "-p", "-m", "755", QuoteString(data_dir)) if data_dir else None
    if config:
        # One command, the content already known to differ (the fact's hash): staged with its mode from
        # its creation and renamed into place; one holding a secret travels on stdin. A new storage
        # directory is made by the same command: one round trip fewer on a fresh server.
        text, path, mode, secret = config
        put = render("put-file.sh.j2", path=path, mode=mode, content=None if secret else text).strip()
        parts = (*((mkdir, "||", "exit", "1", "\n") if mkdir else ()), put)
        yield StringCommand(*parts, _stdin=text) if secret else StringCommand(*parts)
    elif mkdir:
        yield mkdir
    if archive:
        sent = list(files.put._inner(src=archive.src, dest=archive.dest, mode="600"))
        yield from sent
        if sent or not image_present:
            yield archive.then
    if pull:
        yield StringCommand(pull)
    if script:
        yield StringCommand(script.strip()) if script_stdin is None else StringCommand(script.strip(),
                                                                                       _stdin=script_stdin)
