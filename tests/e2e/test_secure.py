"""The secure modes on a lab of their own (regdeploy-secure): plain HTTP → TLS with authentication →
plain HTTP, each converging in one run with the next run changing nothing, while a container keeps
running on a client and every image pushed before stays pullable; no password in pyinfra's output
(with --debug and --json) or in the hosts' process lists; a certificate near expiry is re-issued.

The tests run in file order and share the lab: each starts from the mode the previous one left.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from lab import config as lab_config
from regdeploy import pki
from tests.access import REPO_ROOT, Access, DeployResult, assert_did_what_dry_said, own_lab, run_deploy

SECURE_LAB = lab_config.default_lab("regdeploy-secure")
REGISTRY = "registry:5000"
PASSWORDS = {"ci": "ci-Pa55 \"quoted\" $(not run)", "reader": "r3ader:with:colons"}
NEW_PASSWORDS = {"ci": "ci-rotated-7f3a91", "reader": "reader-rotated-c2d8e4"}


class Lab:
    def __init__(self, access: Access, work: Path):
        self.access, self.work = access, work
        self.password_file = work / "passwords"
        self.tls_dir = work / "tls"
        self.passwords = dict(PASSWORDS)
        self.write_passwords()

    def write_passwords(self) -> None:
        # ci's password comes from the environment; reader's from the untracked file (0600).
        self.password_file.write_text(f"# registry accounts\nreader:{self.passwords['reader']}\n")
        self.password_file.chmod(0o600)

    @property
    def env(self) -> dict[str, str]:
        return {"REGDEPLOY_PASSWORD_CI": self.passwords["ci"]}

    def inventory(self, secure: bool) -> Path:
        data = {"registry_tls_dir": str(self.tls_dir), "registry_password_file": str(self.password_file)}
        if secure:
            data |= {"registry_tls": True, "registry_auth": True, "registry_users": ["ci", "reader"]}
        return self.access.inventory_with(self.work / f"inventory-{'secure' if secure else 'plain'}.py", **data)

    def deploy(self, secure: bool, *extra: str) -> DeployResult:
        result = run_deploy(self.inventory(secure), *extra, env=self.env)
        assert result.returncode == 0, result.stderr[-4000:]
        return result

    def converge(self, secure: bool) -> DeployResult:
        """One run that changes what it must, then one that changes nothing."""
        first = self.deploy(secure)
        again = self.deploy(secure)
        assert again.changed_hosts() == set(), again.changes()
        return first

    def ssh(self, host: str, command: str, **kwargs) -> str:
        return self.access.ssh(host, command, **kwargs)

    def run(self, host: str, command: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["ssh", "-F", str(self.access.ssh_config), host, command], input=stdin,
                              capture_output=True, text=True, timeout=300)

    def keeper(self) -> str:
        """The long-running container on client2: its id and start time (a Docker restart changes it)."""
        return self.ssh("client2", "docker inspect -f '{{.Id}} {{.State.Running}} {{.State.StartedAt}}' keeper")


@pytest.fixture(scope="module")
def lab(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("secure")
    with own_lab(request, SECURE_LAB, 2, work) as access:
        lab = Lab(access, work)
        lab.converge(secure=False)
        for host in ("client1", "client2"):
            access.load_image_archive(host, SECURE_LAB.test_image_archive)
        lab.ssh("client1", f"docker tag busybox:latest {REGISTRY}/lab/before:1 && docker push -q {REGISTRY}/lab/before:1")
        lab.ssh("client2", "docker run -d --name keeper busybox:latest sleep 100000")
        yield lab


def _verify_suite(lab: Lab, secure: bool) -> None:
    """The testinfra suite, unchanged, against the lab in this mode (as a user runs it on their fleet)."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/verify",
         f"--inventory={lab.inventory(secure)}", f"--test-image-archive={SECURE_LAB.test_image_archive}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, **lab.env})
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-500:]


def test_plain_to_tls_with_auth_in_one_run(lab):
    keeper = lab.keeper()
    dry = run_deploy(lab.inventory(secure=True), "--dry", env=lab.env)
    first = lab.converge(secure=True)
    assert_did_what_dry_said(dry, first)
    done = first.changes()
    assert all(("Trust the registry in Docker's daemon.json | Install the registry's CA for Docker as "
                f"/etc/docker/certs.d/{REGISTRY}/ca.crt", h) in done for h in ("registry", "client1", "client2"))
    assert all(("Log in to the registry | Log Docker in to registry:5000 as ci", h) in done
               for h in ("registry", "client1", "client2"))
    # A reload, not a restart: the container on the client kept running, untouched.
    assert lab.keeper() == keeper and " true " in keeper
    for host in ("registry", "client1", "client2"):
        assert REGISTRY not in lab.ssh(host, "cat /etc/docker/daemon.json; docker info -f "
                                             "'{{range .RegistryConfig.IndexConfigs}}{{if not .Secure}}{{.Name}} {{end}}{{end}}'")


def test_tls_verifies_chain_and_name_and_refuses_plain_http(lab):
    ca = f"/etc/docker/certs.d/{REGISTRY}/ca.crt"
    # Plain HTTP on the port: the registry answers 400 (an HTTP request to an HTTPS server), nothing else.
    assert lab.ssh("client1", f"curl -s -o /dev/null -w '%{{http_code}}' http://{REGISTRY}/v2/") == "400"
    # curl verifies chain and name against the CA; anonymous, the registry says 401.
    assert lab.ssh("client1", f"curl -sS -o /dev/null -w '%{{http_code}}' --cacert {ca} https://{REGISTRY}/v2/") == "401"
    assert lab.run("client1", f"curl -sS -o /dev/null https://{REGISTRY}/v2/").returncode == 60  # unknown CA
    handshake = lab.run("client1", f"openssl s_client -connect {REGISTRY} -servername registry -CAfile {ca} "
                                   "-verify_return_error -verify_hostname registry </dev/null")
    assert handshake.returncode == 0 and "Verify return code: 0 (ok)" in handshake.stdout, handshake.stderr
    wrong = lab.run("client1", f"openssl s_client -connect {REGISTRY} -CAfile {ca} -verify_return_error "
                               "-verify_hostname not-the-registry.example </dev/null")
    assert wrong.returncode != 0, "a certificate for another name must not verify"
    by_address = lab.run("client1", f"curl -sS -o /dev/null -w '%{{http_code}}' --cacert {ca} "
                                    f"https://{lab.access.fleet.server.address}:5000/v2/")
    assert by_address.stdout == "401", by_address.stderr  # the server's address is in the certificate too


def test_anonymous_and_wrong_password_are_refused_logged_in_hosts_push_and_pull(lab):
    anonymous = "DOCKER_CONFIG=$(mktemp -d) docker"
    pull = lab.run("client2", f"{anonymous} pull {REGISTRY}/lab/before:1")
    assert pull.returncode != 0 and ("no basic auth credentials" in pull.stderr or "401" in pull.stderr
                                     or "unauthorized" in pull.stderr), pull.stderr
    lab.ssh("client1", f"docker tag busybox:latest {REGISTRY}/lab/anonymous:1")
    push = lab.run("client1", f"{anonymous} push {REGISTRY}/lab/anonymous:1")
    assert push.returncode != 0, push.stdout
    wrong = lab.run("client1", f"{anonymous} login -u ci --password-stdin {REGISTRY}", stdin="not-the-password\n")
    assert wrong.returncode != 0 and "unauthorized" in wrong.stderr.lower(), wrong.stderr
    right = lab.run("client1", f"{anonymous} login -u reader --password-stdin {REGISTRY}",
                    stdin=lab.passwords["reader"] + "\n")
    assert right.returncode == 0, right.stderr
    # The deploy logged every host in as ci: push from one client, pull the old and the new on the other.
    lab.ssh("client1", f"docker tag busybox:latest {REGISTRY}/lab/after:1 && docker push -q {REGISTRY}/lab/after:1")
    lab.ssh("client2", f"docker pull -q {REGISTRY}/lab/before:1 && docker pull -q {REGISTRY}/lab/after:1")
    for path in ("/etc/regdeploy/tls/registry.key", "/etc/regdeploy/auth/htpasswd", "/etc/regdeploy/api-credentials"):
        assert lab.ssh("registry", f"stat -c '%a %U' {path}") == "600 root", path
    _verify_suite(lab, secure=True)


def cli(lab: Lab, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "regdeploy"), "-i", str(lab.inventory(True)), *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **lab.env, **(env or {})})


def test_cli_finds_the_ca_and_credentials_where_the_deploy_does(lab):
    listed = cli(lab, "catalog", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {"repository": "lab/before", "tags": ["1"]} in json.loads(listed.stdout)
    refused = cli(lab, "catalog", env={"REGDEPLOY_PASSWORD_CI": "wrong"})
    assert refused.returncode == 4 and "refused user 'ci' (401)" in refused.stderr  # Exit.AUTH_REFUSED
    archive = lab.work / "backup.tar"
    backup = cli(lab, "backup", str(archive))
    assert backup.returncode == 0, backup.stderr
    with tarfile.open(archive) as tar:
        recorded = tar.extractfile("regdeploy-manifests.txt")
        assert "lab/before 1 sha256:" in recorded.read().decode()


def test_no_password_in_output_or_process_lists_and_rotation_takes(lab):
    old = dict(lab.passwords)
    lab.passwords = dict(NEW_PASSWORDS)
    lab.write_passwords()
    hosts = ("registry", "client1", "client2")
    for host in hosts:  # every process's command line, every 20 ms, for the length of the deploy
        lab.ssh(host, "rm -f /tmp/ps.log; systemd-run --unit regdeploy-ps-sampler sh -c "
                      "'while :; do ps -eo args >> /tmp/ps.log; sleep 0.02; done'")
    result = lab.deploy(True, "--debug")
    for host in hosts:
        lab.ssh(host, "systemctl stop regdeploy-ps-sampler")
    changed = {op for op, _ in result.changes()}
    assert "Install the registry's TLS and authentication files | Write the registry's users to " \
           "/etc/regdeploy/auth/htpasswd (mode 600)" in changed
    assert "Log in to the registry | Log Docker in to registry:5000 as ci" in changed
    output = result.stderr + json_text(result)
    assert "[pyinfra.api" in output, "the run was not --debug"
    process_lists = {host: lab.ssh(host, "cat /tmp/ps.log") for host in hosts}
    assert all(text.count("\n") > 20 for text in process_lists.values()), "the sampler did not run"
    assert any("docker login" in text for text in process_lists.values()), "the sampler missed the logins"
    for password in (*old.values(), *NEW_PASSWORDS.values()):
        assert password not in output
        for host, text in process_lists.items():
            assert password not in text, f"a password was on a command line on {host}"
    # The rotation took: the new password logs in, the old one no longer does.
    login = "DOCKER_CONFIG=$(mktemp -d) docker login -u ci --password-stdin " + REGISTRY
    assert lab.run("client2", login, stdin=NEW_PASSWORDS["ci"] + "\n").returncode == 0
    assert lab.run("client2", login, stdin=old["ci"] + "\n").returncode != 0
    again = lab.deploy(True)
    assert again.changed_hosts() == set(), again.changes()  # bcrypt salts differ; the hashes still verify


def json_text(result: DeployResult) -> str:
    return json.dumps(result.output) if result.output else ""


def _served_certificate(lab: Lab) -> x509.Certificate:
    pem = lab.ssh("client1", f"openssl s_client -connect {REGISTRY} </dev/null 2>/dev/null | openssl x509")
    return x509.load_pem_x509_certificate(pem.encode())


def test_certificate_near_expiry_is_reissued_one_that_is_not_is_left_alone(lab):
    cert_file = lab.tls_dir / pki.SERVER_CERT
    before = cert_file.read_bytes()
    assert lab.deploy(True).changed_hosts() == set()
    assert cert_file.read_bytes() == before, "a certificate far from expiry must stay as it is"

    # Replace it by one of the same CA and names that expires in 10 days.
    ca = x509.load_pem_x509_certificate((lab.tls_dir / pki.CA_CERT).read_bytes())
    ca_key = serialization.load_pem_private_key((lab.tls_dir / pki.CA_KEY).read_bytes(), password=None)
    names = sorted(pki.cert_names(x509.load_pem_x509_certificate(before)))
    now = datetime.datetime.now(datetime.timezone.utc)
    short, key = pki.issue(ca, ca_key, names, now, validity=datetime.timedelta(days=10))
    cert_file.write_bytes(short.public_bytes(serialization.Encoding.PEM))
    (lab.tls_dir / pki.SERVER_KEY).write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    result = lab.deploy(True)  # re-issues it on the controller, installs the new one, restarts the registry
    assert ("Install the registry's TLS and authentication files | Install the registry's TLS certificate "
            "/etc/regdeploy/tls/registry.crt", "registry") in result.changes()
    served = _served_certificate(lab)
    assert served.serial_number != short.serial_number, "the deploy served a certificate 10 days from expiry"
    assert served.not_valid_after_utc - now > datetime.timedelta(days=300)
    assert served.public_bytes(serialization.Encoding.PEM) == cert_file.read_bytes()
    assert lab.deploy(True).changed_hosts() == set()


def test_back_to_plain_http_in_one_run_images_and_containers_kept(lab):
    keeper = lab.keeper()
    lab.converge(secure=False)
    assert lab.keeper() == keeper
    for image in ("lab/before:1", "lab/after:1"):
        lab.ssh("client2", f"docker image rm {REGISTRY}/{image} >/dev/null 2>&1; docker pull -q {REGISTRY}/{image}")
    assert lab.ssh("client1", f"curl -s -o /dev/null -w '%{{http_code}}' http://{REGISTRY}/v2/") == "200"
    for host in ("registry", "client1", "client2"):
        assert lab.ssh(host, f"ls /etc/docker/certs.d/{REGISTRY} /root/.docker/regdeploy-login 2>/dev/null || true") == ""
    assert lab.ssh("registry", "ls /etc/regdeploy") == "config.yml"
    _verify_suite(lab, secure=False)


def test_auth_without_tls_is_refused_before_any_change(lab):
    path = lab.access.inventory_with(lab.work / "inventory-auth-only.py", registry_auth=True,
                                     registry_users=["ci"], registry_password_file=str(lab.password_file))
    result = run_deploy(path, env=lab.env)
    assert result.returncode != 0
    assert "registry_auth needs registry_tls=true: without TLS, Docker sends every password in clear" in result.stderr
    assert result.output is None or not result.changed_hosts()

