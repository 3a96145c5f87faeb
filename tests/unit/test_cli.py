"""The regdeploy command's conventions: one exit code per kind of failure (each proven here against a
stand-in registry on loopback, or a closed loopback port), --json on every command that reports,
--password-stdin, and a progress display that stays quiet off a terminal."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from regdeploy.cli import EXIT_HELP, Exit, Progress, dry_run_report
from regdeploy import registry_files

REGDEPLOY = str(Path(sys.executable).parent / "regdeploy")

# A stand-in registry: the v2 API paths the commands use, a repository that needs a password, one
# that is missing, one whose registry fails.
STAND_IN = textwrap.dedent('''
    import base64, json, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            path = self.path.split("?")[0]
            if path == "/v2/_catalog":
                return self.answer(200, {"repositories": ["team/app"]})
            if path == "/v2/team/app/tags/list":
                return self.answer(200, {"name": "team/app", "tags": ["1", "2"]})
            if path == "/v2/secret/app/tags/list":
                expected = "Basic " + base64.b64encode(b"ci:right-Pa55").decode()
                if self.headers.get("Authorization") != expected:
                    return self.answer(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                return self.answer(200, {"name": "secret/app", "tags": ["s"]})
            if path == "/token":  # a token service: tokens for ci's password only
                if self.headers.get("Authorization") != "Basic " + base64.b64encode(b"ci:right-Pa55").decode():
                    return self.answer(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                scope = self.path.split("scope=", 1)[1] if "scope=" in self.path else ""
                return self.answer(200, {"token": "tok-" + scope})
            if path in ("/v2/bearer/app/tags/list", "/v2/named/app/tags/list"):  # token authentication
                name = path.split("/")[2]
                if self.headers.get("Authorization") != f"Bearer tok-repository%3A{name}%2Fapp%3Apull":
                    self.send_response(401)
                    # `named`: a realm whose host only the fleet resolves (registry_host).
                    host = "registry.invalid" if name == "named" else "127.0.0.1"
                    realm = f"http://{host}:{self.server.server_address[1]}/token"
                    self.send_header("WWW-Authenticate", f'Bearer realm="{realm}",service="registry",'
                                                         f'scope="repository:{name}/app:pull"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                return self.answer(200, {"name": f"{name}/app", "tags": [name[0]]})
            if path == "/v2/broken/app/tags/list":
                return self.answer(500, {"errors": [{"code": "UNKNOWN"}]})
            return self.answer(404, {"errors": [{"code": "NAME_UNKNOWN"}]})

    server = HTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()
''')


@pytest.fixture(scope="module")
def registry():
    process = subprocess.Popen([sys.executable, "-c", STAND_IN], stdout=subprocess.PIPE, text=True)
    try:
        yield f"127.0.0.1:{process.stdout.readline().strip()}"
    finally:
        process.kill()
        process.wait()


def regdeploy(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([REGDEPLOY, *args], input=stdin, capture_output=True, text=True, timeout=120)


def write_inventory(path: Path, data: dict | None = None, server: str = "reg1") -> Path:
    # reg1's SSH goes to a closed loopback port: nothing answers, nothing else is reached.
    ssh = {"ssh_hostname": "127.0.0.1", "ssh_port": 1, "ssh_connect_retries": 0, **(data or {})}
    path.write_text(f"registry_servers = [({server!r}, {ssh!r})]\ndocker_clients = []\n"
                    "databases = [('db1', {'ssh_hostname': '127.0.0.1', 'ssh_port': 1})]\n")
    return path


def test_every_exit_code_is_documented_in_the_help():
    text = regdeploy("--help").stdout
    for code, meaning in EXIT_HELP.items():
        assert f"{code.value}  {meaning}" in text
    assert [code.value for code in Exit] == list(range(7))


def test_exit_0_done_with_json(registry):
    result = regdeploy("--registry", registry, "tags", "team/app", "--json")
    assert result.returncode == Exit.OK, result.stderr
    assert json.loads(result.stdout) == {"repository": "team/app", "tags": ["1", "2"]}


def test_exit_1_when_the_registry_fails(registry):
    result = regdeploy("--registry", registry, "tags", "broken/app")
    assert result.returncode == Exit.FAILED
    assert "answered 500" in result.stderr


@pytest.mark.parametrize("args,stdin,message", [
    (("check-ref", "busybox", "Bad Ref"), "", "invalid  Bad Ref"),
    (("--username", "ci", "--password", "x", "--password-stdin", "catalog"), "y\n", "exclude each other"),
    (("--password-stdin", "catalog"), "y\n", "--password-stdin needs --username"),
    (("gc", "--no-such-option"), "", "No such option"),
])
def test_exit_2_on_bad_input(args, stdin, message):
    result = regdeploy(*args, stdin=stdin)
    assert result.returncode == Exit.BAD_INPUT, (result.stdout, result.stderr)
    assert message in result.stdout + result.stderr


def test_verify_needs_an_inventory_and_checks_it_before_any_host(tmp_path):
    assert regdeploy("verify").returncode == Exit.BAD_INPUT
    inventory = write_inventory(tmp_path / "inventory.py", {"registry_port": 0})
    result = regdeploy("-i", str(inventory), "verify")
    assert result.returncode == Exit.BAD_INPUT and "registry_port=0 is out of range" in result.stderr


def test_exit_2_on_an_invalid_inventory(tmp_path):
    inventory = write_inventory(tmp_path / "inventory.py", {"registry_port": 0})
    result = regdeploy("-i", str(inventory), "gc")
    assert result.returncode == Exit.BAD_INPUT
    assert "registry_port=0 is out of range" in result.stderr


def test_check_ref_json_says_which_reference_is_invalid():
    result = regdeploy("check-ref", "--json", "busybox", "Bad Ref")
    assert result.returncode == Exit.BAD_INPUT
    listed = json.loads(result.stdout)
    assert listed[0] == {"reference": "busybox", "valid": True, "normalized": "docker.io/library/busybox:latest"}
    assert listed[1]["valid"] is False and "Bad Ref" == listed[1]["reference"]


def test_exit_3_when_the_registry_is_unreachable():
    result = regdeploy("--registry", "127.0.0.1:1", "catalog")
    assert result.returncode == Exit.UNREACHABLE
    assert "cannot reach the registry at http://127.0.0.1:1" in result.stderr


def test_exit_3_when_the_server_is_unreachable_over_ssh(tmp_path):
    """gc reaches the server through pyinfra's connector, with the inventory's ssh_port."""
    result = regdeploy("-i", str(write_inventory(tmp_path / "inventory.py")), "gc", "--dry-run")
    assert result.returncode == Exit.UNREACHABLE, result.stderr
    assert "gc: host 'reg1': cannot connect" in result.stderr


def test_exit_4_when_the_registry_refuses_the_password_given_on_stdin(registry):
    right = regdeploy("--registry", registry, "--username", "ci", "--password-stdin", "tags", "secret/app",
                      stdin="right-Pa55\n")
    assert right.returncode == Exit.OK, right.stderr
    assert right.stdout.split() == ["s"]
    wrong = regdeploy("--registry", registry, "--username", "ci", "--password-stdin", "tags", "secret/app",
                      stdin="Wr0ng-Pa55\n")
    assert wrong.returncode == Exit.AUTH_REFUSED
    assert "refused user 'ci' (401)" in wrong.stderr
    assert "Wr0ng-Pa55" not in wrong.stderr + wrong.stdout


def test_a_registry_with_token_authentication_is_answered_with_a_token(registry):
    """registry_access: the 401's Bearer challenge sends the client to the realm for a token (with the
    password as basic authentication), and the request goes again with it."""
    right = regdeploy("--registry", registry, "--username", "ci", "--password-stdin", "tags", "bearer/app",
                      stdin="right-Pa55\n")
    assert right.returncode == Exit.OK, right.stderr
    assert right.stdout.split() == ["b"]
    wrong = regdeploy("--registry", registry, "--username", "ci", "--password-stdin", "tags", "bearer/app",
                      stdin="Wr0ng-Pa55\n")
    assert wrong.returncode == Exit.AUTH_REFUSED and "refused user 'ci' (401)" in wrong.stderr, wrong.stderr
    anonymous = regdeploy("--registry", registry, "tags", "bearer/app")
    assert anonymous.returncode == Exit.AUTH_REFUSED and "requires authentication" in anonymous.stderr


def test_a_token_realm_named_for_the_fleet_is_reached_where_the_registry_is(registry):
    """The realm names registry_host, which the controller may not resolve: the client asks the
    address it reaches the registry at (the CLI maps registry_host to it)."""
    from regdeploy.registry_api import RegistryClient

    # (Without the mapping the client would ask DNS for registry.invalid: not done here, the tests
    # send nothing beyond loopback and the lab.)
    client = RegistryClient(f"http://{registry}", auth=("ci", "right-Pa55"),
                            realm_hosts={"registry.invalid": "127.0.0.1"})
    assert client.tags("named/app") == ["n"]


def test_exit_5_when_a_repository_or_a_host_is_not_there(registry, tmp_path):
    result = regdeploy("--registry", registry, "tags", "no/such")
    assert result.returncode == Exit.NOT_FOUND
    assert "not found in the registry" in result.stderr
    # db1 is in the inventory but in none of regdeploy's groups: no command reaches it either.
    inventory = write_inventory(tmp_path / "inventory.py")
    result = regdeploy("-i", str(inventory), "copy", "busybox", "--on", "db1")
    assert result.returncode == Exit.NOT_FOUND
    assert "--on 'db1' is not one of the inventory's hosts in regdeploy's groups (reg1)" in result.stderr


# gc and prune on S3 go replica by replica (tests/unit/test_maintenance.py); backup and gc's dry run,
# which read the server's disk, are refused.
@pytest.mark.parametrize("command", [["backup", "out.tar"], ["gc", "--dry-run"]])
def test_exit_6_refused_for_safety_on_s3_storage(tmp_path, command):
    inventory = write_inventory(tmp_path / "inventory.py", {
        "registry_storage": "s3", "registry_s3_bucket": "registry", "registry_s3_access_key": "k",
        "registry_s3_secret_file": str(tmp_path / "secret"), "registry_http_secret_file": str(tmp_path / "http")})
    (tmp_path / "secret").write_text("s3cret\n")
    (tmp_path / "http").write_text("h\n")
    for secret in ("secret", "http"):
        (tmp_path / secret).chmod(0o600)
    command = [str(tmp_path / c) if c.endswith(".tar") else c for c in command]
    result = regdeploy("-i", str(inventory), *command)
    assert result.returncode == Exit.REFUSED, result.stderr
    assert "Nothing was done" in result.stderr
    assert not (tmp_path / "out.tar").exists() and not (tmp_path / "out.tar.partial").exists()


def test_a_server_scripts_refusal_is_the_commands_exit_6():
    assert registry_files.REFUSED == Exit.REFUSED


def test_progress_is_shown_on_a_terminal_only():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    shown = Terminal()
    progress = Progress("backup from reg1", stream=shown, every=0)
    progress.bytes(2_500_000)
    progress.items(1, 1, final=True)
    progress.done()
    assert shown.getvalue() == "\rbackup from reg1: 2.5 MB\033[K\rbackup from reg1: 1/1 images\033[K\n"
    quiet = io.StringIO()
    progress = Progress("backup from reg1", stream=quiet, every=0)
    progress.bytes(2_500_000, final=True)
    progress.done()
    assert quiet.getvalue() == ""


def test_the_dry_run_report_adds_up_what_would_be_freed():
    lines = ["blob sha256:aa 100", "blob sha256:bb 23", "manifest sha256:cc"]
    assert dry_run_report(lines) == {"dry_run": True, "manifests": ["sha256:cc"], "bytes": 123,
                                     "blobs": [{"digest": "sha256:aa", "bytes": 100},
                                               {"digest": "sha256:bb", "bytes": 23}]}


def test_a_host_is_run_on_through_pyinfras_connector_with_bytes_in_and_out(tmp_path):
    """remote.Connection.run on pyinfra's @local connector: the script gets stdin as bytes, its stdout
    comes back as bytes, its exit status as is, and progress counts what was streamed."""
    from regdeploy import remote

    inventory = tmp_path / "inventory.py"
    inventory.write_text('registry_servers = ["@local"]\n')
    payload = bytes(range(256)) * 1024
    seen: list[int] = []
    with remote.connect(str(inventory), "@local") as connection:
        out = io.BytesIO()
        status = connection.run("cat; exit 3", stdin=io.BytesIO(payload), stdout=out, progress=seen.append)
        assert (status, out.getvalue()) == (3, payload)
        assert seen and seen[-1] == len(payload)
        out = io.BytesIO()
        assert connection.run("printf 'a\\0b'", stdout=out) == 0 and out.getvalue() == b"a\0b"


def test_rotate_ca_steps_in_order_and_exit_6_out_of_order(tmp_path):
    tls = tmp_path / "tls"
    inventory = tmp_path / "inventory.py"
    inventory.write_text(f"registry_servers = [('reg1', {{'registry_tls': True, 'registry_tls_dir': {str(tls)!r}}})]\n")

    def rotate(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([REGDEPLOY, "-i", str(inventory), "rotate-ca", *args], capture_output=True, text=True,
                              timeout=60)

    refused = rotate("begin")
    assert refused.returncode == Exit.REFUSED and "holds no CA regdeploy made" in refused.stderr
    from regdeploy import pki

    pki.generated_material(tls, ["reg1"])
    begun = rotate("begin", "--json")
    assert begun.returncode == 0, begun.stderr
    assert json.loads(begun.stdout)["step"] == "begin" and (tls / pki.CA_NEXT_CERT).is_file()
    again = rotate("begin")
    assert again.returncode == Exit.REFUSED and "switch it first" in again.stderr
    assert rotate("switch").returncode == 0 and rotate("finish").returncode == 0
    assert rotate("cert").returncode == 0 and not (tls / pki.SERVER_CERT).exists()
