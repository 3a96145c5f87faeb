"""Accounts with rights (registry_access) on a lab of their own (regdeploy-access): TLS, accounts,
rules, distribution's token authentication with regdeploy's token service on the server.

- registry (Docker 20.10) logs in as `ci` (everything), client1 as `nodes` (pull only), client2 as
  `robot-a` (pushes team-a/* only), client3 is a Podman host (Debian 13, no Docker) that pulls as `nodes`,
  client4 and client5 containerd hosts without Docker (Debian 13: containerd 1.7; sid: 2.1) that pull
  through CRI, as a kubelet does, as `nodes` and `robot-a`;
- anonymous pull only while a rule allows it, switched without restarting the registry;
- Podman's credentials survive a reboot;
- no password, token or key in pyinfra's output, a process list or a file others may read;
- the verify suite passes against this fleet as it is.

The tests run in file order and share the lab.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from lab import config as lab_config
from lab import hosts as lab_hosts
from regdeploy import access, pki, registry_files, runtime_config
from tests.access import REPO_ROOT, Access, DeployResult, own_lab, run_deploy
from tests.verify import cri

ACCESS_LAB = lab_config.default_lab("regdeploy-access")
OS = "bookworm,bookworm,bookworm,trixie:podman,trixie:containerd,sid:containerd"
REGISTRY = "registry:5000"
PASSWORDS = {"ci": "ci-Acc3ss-$(id)-91", "nodes": "nodes-Acc3ss 'q' 52", "robot-a": "robot-Acc3ss-7c"}
RULES = ["ci * pull,push,delete", "nodes * pull", "robot-a team-a/* pull,push"]
ANONYMOUS = "anonymous public/* pull"
DATA_DIR = "/var/lib/registry"  # registry_data_dir's default
LOGINS = {"registry": "ci", "client1": "nodes", "client2": "robot-a", "client3": "nodes", "client4": "nodes",
          "client5": "robot-a"}


class Lab:
    def __init__(self, access: Access, work: Path):
        self.access, self.work = access, work
        self.password_file = work / "passwords"
        self.passwords: dict[str, str] = {}
        self.every_password: set[str] = set()  # every one this lab used: none may show anywhere
        self.local_users: dict[str, list[str]] = {}  # registry_login_local_users per host
        self.set_passwords(PASSWORDS)

    def set_passwords(self, passwords: dict[str, str]) -> None:
        self.passwords = dict(passwords)
        self.every_password |= set(passwords.values())
        self.password_file.write_text("".join(f"{user}:{password}\n" for user, password in passwords.items()))
        self.password_file.chmod(0o600)

    def inventory(self, rules: list[str]) -> Path:
        return self.access.inventory_with(
            self.work / "inventory.py",
            per_host={h: {"registry_login_user": u, "registry_login_local_users": self.local_users.get(h, [])}
                      for h, u in LOGINS.items()},
            registry_tls=True, registry_auth=True, registry_users=list(PASSWORDS), registry_access=rules,
            registry_tls_dir=str(self.work / "tls"), registry_password_file=str(self.password_file))

    def deploy(self, rules: list[str], *extra: str) -> DeployResult:
        result = run_deploy(self.inventory(rules), *extra)
        said = "\n".join(line for line in result.stderr.splitlines() if not line.lstrip().startswith("{"))
        assert result.returncode == 0, said[-6000:]
        return result

    def ssh(self, host: str, command: str, check: bool = True) -> str:
        return self.access.ssh(host, command, check=check)

    def started(self) -> str:
        return self.ssh("registry", "docker inspect -f '{{.State.StartedAt}}' registry")


@pytest.fixture(scope="module")
def lab(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("access")
    with own_lab(request, ACCESS_LAB, len(LOGINS) - 1, work, os_spec=OS) as access:
        lab = Lab(access, work)
        first = lab.deploy(RULES)
        assert first.changed_hosts() == set(LOGINS)
        again = lab.deploy(RULES)
        assert again.changed_hosts() == set(), again.changes()
        # The server's Docker is logged in as ci: it pushes what the tests pull.
        access.load_image_archive("registry", ACCESS_LAB.test_image_archive)
        for repository in ("team-a/app", "team-b/app", "public/base"):
            lab.ssh("registry", f"docker tag busybox:latest {REGISTRY}/{repository}:1 && "
                                f"docker push -q {REGISTRY}/{repository}:1 >/dev/null")
        for host in ("client1", "client2"):
            access.load_image_archive(host, ACCESS_LAB.test_image_archive)
        yield lab


def _push(lab: Lab, host: str, repository: str) -> subprocess.CompletedProcess:
    target = f"{REGISTRY}/{repository}:from-{host}"
    return subprocess.run(["ssh", "-F", str(lab.access.ssh_config), host,
                           f"docker tag busybox:latest {target} && docker push {target}"],
                          capture_output=True, text=True, timeout=300)


def _catalog_tags(lab: Lab, repository: str) -> list[str]:
    """The tags the registry holds for `repository`, read in its storage on the server."""
    listing = lab.ssh("registry", f"ls {DATA_DIR}/docker/registry/v2/repositories/{repository}/_manifests/tags")
    assert "1" in listing.split(), listing  # what the fixture pushed: the listing is real
    return listing.split()


def test_the_token_service_runs_and_the_registry_trusts_only_it(lab):
    assert lab.ssh("registry", f"systemctl is-active {registry_files.TOKEN_UNIT}") == "active"
    assert lab.ssh("registry", f"systemctl is-enabled {registry_files.TOKEN_UNIT}") == "enabled"
    config = lab.ssh("registry", "cat /etc/regdeploy/config.yml")
    assert "realm: \"https://registry:5002/token\"" in config and "htpasswd" not in config
    # A well-formed token for a pull, signed by a key the registry does not trust: refused by the
    # registry itself (the token service is not even asked).
    other, _ = pki.token_signing_material(lab.work / "other-key")
    claims = {"iss": access.ISSUER, "aud": access.SERVICE, "sub": "ci", "iat": int(time.time()),
              "nbf": int(time.time()) - 10, "exp": int(time.time()) + 300,
              "access": [{"type": "repository", "name": "team-b/app", "actions": ["pull"]}]}
    der = x509.load_pem_x509_certificate(other.cert_pem.encode()).public_bytes(serialization.Encoding.DER)
    forged = jwt.encode(claims, other.key_pem, algorithm="ES256", headers={"x5c": [base64.b64encode(der).decode()]})
    status = lab.ssh("client1", f"curl -s -o /dev/null -w '%{{http_code}}' --cacert /etc/docker/certs.d/{REGISTRY}/ca.crt "
                                f"-H 'Authorization: Bearer {forged}' https://{REGISTRY}/v2/team-b/app/tags/list")
    assert status == "401", status


def test_a_token_service_stopped_by_hand_is_started_by_the_next_deploy(lab):
    lab.ssh("registry", f"systemctl stop {registry_files.TOKEN_UNIT}")
    result = lab.deploy(RULES)
    assert result.changed_hosts() == {"registry"}, result.changes()
    assert lab.ssh("registry", f"systemctl is-active {registry_files.TOKEN_UNIT}") == "active"
    assert lab.deploy(RULES).changed_hosts() == set()


def test_the_regdeploy_command_lists_the_registry_with_a_token(lab):
    """The CLI on the controller, as the server's account (ci, which may pull '*'): the catalog and
    tags through token authentication, with the CA and password found as the deploy finds them."""
    regdeploy = str(Path(sys.executable).parent / "regdeploy")
    listed = subprocess.run([regdeploy, "-i", str(lab.inventory(RULES)), "catalog", "--json"], capture_output=True,
                            text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    repositories = {entry["repository"]: entry["tags"] for entry in json.loads(listed.stdout)}
    assert {"team-a/app", "team-b/app", "public/base"} <= set(repositories) and repositories["team-b/app"] == ["1"]


def test_a_pull_only_account_pulls_and_is_denied_a_push(lab):
    assert lab.ssh("client1", f"docker pull -q {REGISTRY}/team-b/app:1")
    pushed = _push(lab, "client1", "team-b/app")
    assert pushed.returncode != 0 and "denied" in pushed.stdout + pushed.stderr, pushed.stdout + pushed.stderr
    assert "from-client1" not in _catalog_tags(lab, "team-b/app")


def test_a_robot_pushes_its_own_namespace_and_is_denied_another(lab):
    ok = _push(lab, "client2", "team-a/app")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "from-client2" in _catalog_tags(lab, "team-a/app")
    denied = _push(lab, "client2", "team-b/app")
    assert denied.returncode != 0 and "denied" in denied.stdout + denied.stderr, denied.stdout + denied.stderr
    assert "from-client2" not in _catalog_tags(lab, "team-b/app")
    # And it may not even read another team's images.
    assert lab.ssh("client2", f"docker pull -q {REGISTRY}/team-b/app:1 2>&1", check=False).find("denied") >= 0


def test_anonymous_pull_only_while_a_rule_allows_it(lab):
    anonymous = f"DOCKER_CONFIG=$(mktemp -d) docker pull -q {REGISTRY}/public/base:1 2>&1"
    refused = lab.ssh("client1", anonymous, check=False)
    assert "unauthorized" in refused or "denied" in refused, refused
    started = lab.started()
    lab.deploy([*RULES, ANONYMOUS])
    assert lab.started() == started, "the registry restarted for a rule (the token service re-reads them)"
    assert f"{REGISTRY}/public/base:1" in lab.ssh("client1", anonymous)
    other = lab.ssh("client1", f"DOCKER_CONFIG=$(mktemp -d) docker pull -q {REGISTRY}/team-a/app:1 2>&1", check=False)
    assert "denied" in other or "unauthorized" in other, other
    lab.deploy(RULES)
    refused = lab.ssh("client1", anonymous, check=False)
    assert "unauthorized" in refused or "denied" in refused, refused


def test_podman_pulls_with_its_own_credentials_also_after_a_reboot(lab):
    pull = f"podman pull -q {REGISTRY}/team-b/app:1 && podman rmi -f {REGISTRY}/team-b/app:1 >/dev/null"
    assert lab.ssh("client3", pull)
    assert lab.ssh("client3", f"stat -c '%a %U' {registry_files.PODMAN_AUTH}") == "600 root"
    lab_hosts.reboot(ACCESS_LAB, "client3")
    assert lab.ssh("client3", "ls /run/containers/0/auth.json 2>/dev/null || echo none") == "none"
    assert lab.ssh("client3", pull)
    # The credentials are nodes': a push is denied.
    denied = lab.ssh("client3", f"podman pull -q {REGISTRY}/team-b/app:1 >/dev/null && podman tag {REGISTRY}/team-b/app:1 "
                                f"{REGISTRY}/team-b/app:podman && podman push {REGISTRY}/team-b/app:podman 2>&1",
                     check=False)
    assert "denied" in denied or "unauthorized" in denied, denied
    assert lab.deploy(RULES).changed_hosts() == set()


def test_a_local_user_in_the_docker_group_logs_in_as_them(lab):
    """registry_login_local_users on client2 (robot-a): builder's Docker logs in into builder's own
    home and pushes team-a/*, and is denied team-b/*; a user outside the docker group stops that
    host's login, named, and nothing else."""
    lab.ssh("client2", "id builder >/dev/null 2>&1 || useradd -m -G docker builder; "
                       "id outsider >/dev/null 2>&1 || useradd -m outsider")
    lab.local_users = {"client2": ["builder"]}
    result = lab.deploy(RULES)
    assert ("Log in to the registry | Log Docker (builder) in to registry:5000 as robot-a", "client2") in result.changes()
    assert lab.deploy(RULES).changed_hosts() == set()
    assert lab.ssh("client2", "stat -c '%a %U' ~builder/.docker/config.json ~builder/.docker/regdeploy-login") == \
        "600 builder\n644 builder"
    as_builder = "runuser -u builder -- env DOCKER_CONFIG=/home/builder/.docker docker"
    pushed = lab.ssh("client2", f"{as_builder} tag busybox:latest {REGISTRY}/team-a/app:from-builder && "
                                f"{as_builder} push -q {REGISTRY}/team-a/app:from-builder 2>&1", check=False)
    assert "from-builder" in _catalog_tags(lab, "team-a/app"), pushed
    denied = lab.ssh("client2", f"{as_builder} tag busybox:latest {REGISTRY}/team-b/app:from-builder && "
                                f"{as_builder} push {REGISTRY}/team-b/app:from-builder 2>&1", check=False)
    assert "denied" in denied or "unauthorized" in denied, denied

    lab.local_users = {"client2": ["builder", "outsider"]}
    refused = run_deploy(lab.inventory(RULES))
    assert refused.returncode != 0
    assert "outsider is not in the docker group on this host: add it (usermod -aG docker outsider)" in refused.stderr
    assert lab.ssh("client2", "ls ~outsider/.docker 2>/dev/null || echo none") == "none"
    lab.local_users = {"client2": ["builder"]}
    assert lab.deploy(RULES).changed_hosts() == set()


def _cri_pull(lab: Lab, host: str, image: str) -> tuple[int | None, str]:
    return cri.status(lab.ssh(host, cri.pull(f"{REGISTRY}/{image}"), check=False))


def test_containerd_pulls_through_cri_with_its_own_credentials(lab):
    """CRI's credentials in config.toml (mode 600, every other setting kept): containerd 1.7 and 2.1
    pull as their accounts allow, and are refused what they do not; ctr, with no credentials, is refused."""
    assert _cri_pull(lab, "client4", "team-b/app:1")[0] == 0  # nodes: pull '*'
    assert _cri_pull(lab, "client5", "team-a/app:1")[0] == 0  # robot-a: team-a/* only
    code, message = _cri_pull(lab, "client5", "team-b/app:1")
    assert code not in (None, 0) and ("403" in message or "denied" in message.lower()
                                      or "401" in message or "unauthorized" in message.lower()), (code, message)
    for host in ("client4", "client5"):
        assert lab.ssh(host, f"stat -c '%a %U' {runtime_config.CONTAINERD_CONFIG}") == "600 root"
        refused = lab.ssh(host, f"ctr -n verify images pull --hosts-dir {runtime_config.CONTAINERD_CERTS_DIR} "
                                f"{REGISTRY}/team-b/app:1 2>&1", check=False)
        assert "401" in refused or "unauthorized" in refused.lower(), refused
    # Debian's shipped settings stay as they were (the CNI directories), beside regdeploy's.
    assert "/usr/lib/cni" in lab.ssh("client5", "containerd config dump")


# Who pulls what once a second through a rotation, and with which runtime (containerd: CRI's PullImage).
PULLERS = {"client1": ("docker", "team-b/app:1"), "client2": ("docker", "team-a/app:1"),
           "client3": ("podman", "team-b/app:1"), "client4": ("containerd", "team-b/app:1")}


def _pull_command(runtime: str, image: str) -> str:
    """A shell command that succeeds when `runtime` pulled `image` (why not, on stderr). containerd's
    is `cri_ok`, which the loop defines (CRI_OK)."""
    return "cri_ok" if runtime == "containerd" else f"{runtime} pull -q {REGISTRY}/{image} >/dev/null"


CRI_OK = ("cri_ok() {{ out=$({pull} 2>&1); case \"$out\" in *'grpc-status: 0'*) return 0 ;; esac; "
          "printf '%s\\n' \"$out\" | grep -i -e grpc-message -e curl >&2; return 1; }}; ")


@contextlib.contextmanager
def pulling(lab: Lab):
    """Each of PULLERS pulls its image once a second (the manifest is asked from the registry each
    time, with a token asked with the host's credentials) until the block ends; yields a dict that
    then holds each host's (pulls, failures)."""
    results: dict[str, tuple[int, list[str]]] = {}
    for host, (runtime, image) in PULLERS.items():
        loop = (CRI_OK.format(pull=cri.pull(f"{REGISTRY}/{image}")) if runtime == "containerd" else "") + (
                f"rm -f /tmp/stop-pulls; while [ ! -e /tmp/stop-pulls ]; do if {_pull_command(runtime, image)} "
                f"2>/tmp/pull-error; then echo ok; else echo \"FAIL $(date +%T) $(head -c 300 /tmp/pull-error)\"; "
                "fi; sleep 1; done > /tmp/pulls.log 2>&1")
        lab.ssh(host, f"setsid sh -c {shlex.quote(loop)} < /dev/null > /dev/null 2>&1 &")
    time.sleep(3)
    try:
        yield results
    finally:
        time.sleep(3)
        for host in PULLERS:
            lab.ssh(host, "touch /tmp/stop-pulls")
        time.sleep(3)
        for host in PULLERS:
            lines = lab.ssh(host, "cat /tmp/pulls.log").splitlines()
            results[host] = (len(lines), [line for line in lines if line != "ok"])


def test_a_password_rotation_while_three_hosts_pull_fails_no_pull(lab):
    """Docker (2 hosts) and Podman: zero failed pulls. containerd (a fourth host) restarts: measured."""
    old = dict(PASSWORDS)
    new = {**PASSWORDS, "nodes": "nodes-Rotated-4411", "robot-a": "robot-Rotated-8823"}
    lab.set_passwords(new)
    with pulling(lab) as results:
        result = lab.deploy(RULES)
    for host, (pulls, failures) in results.items():
        assert pulls >= 5, (host, pulls)
        if PULLERS[host][0] != "containerd":
            assert not failures, (host, pulls, failures)
    # containerd reads CRI's credentials only when it starts: it restarts for the new password, and a
    # pull asked meanwhile fails (CRI's clients, the kubelet, ask again). Measured, and bounded.
    restarted = results["client4"][1]
    print(f"containerd (client4) during the password rotation: {len(restarted)} failed of {results['client4'][0]}")
    assert len(restarted) <= 2, restarted
    # The previous hashes were kept while hosts logged in again, then dropped: the old password is refused.
    done = {name for name, _ in result.changes()}
    assert any("previous hashes" in name for name in done) and any("Stop accepting" in name for name in done), done
    assert lab.ssh("registry", "ls /etc/regdeploy/auth") == "htpasswd\ntoken-signing.crt"
    ask = ("curl -s -o /dev/null -w '%{{http_code}}' --cacert /etc/docker/certs.d/registry:5000/ca.crt -K - "
           "'https://registry:5002/token?service=regdeploy-registry'")
    for password, status in ((old["nodes"], "401"), (new["nodes"], "200")):
        config = 'user = "nodes:' + password.replace("\\", "\\\\").replace('"', '\\"') + '"\n'
        assert lab.access.ssh("client1", ask.format(), stdin=config) == status
    assert lab.deploy(RULES).changed_hosts() == set()


def test_a_ca_rotation_and_a_leaf_rotation_while_three_hosts_pull(lab):
    """`regdeploy rotate-ca begin|switch|finish` and `cert`, a deploy after each, with three hosts
    pulling once a second. begin and finish change only what the hosts trust: no pull fails and nothing
    restarts. switch and cert re-issue the server's certificate: the registry is recreated (a single
    server has no other to serve meanwhile), and what that costs is measured, not hidden."""
    tls = lab.work / "tls"
    old_ca = (tls / pki.CA_CERT).read_text()
    inventory = lab.inventory(RULES)
    cost: dict[str, dict[str, int]] = {}
    for step in ("begin", "switch", "finish", "cert"):
        said = subprocess.run([str(Path(sys.executable).parent / "regdeploy"), "-i", str(inventory), "rotate-ca", step],
                              capture_output=True, text=True, timeout=60)
        assert said.returncode == 0, said.stderr
        started = lab.started()
        with pulling(lab) as results:
            lab.deploy(RULES)
        trusted = pki.trusted_pem(tls)
        for host, path in (("client1", f"/etc/docker/certs.d/{REGISTRY}/ca.crt"),
                           ("client3", f"/etc/containers/certs.d/{REGISTRY}/ca.crt")):
            assert lab.ssh(host, f"cat {path}") + "\n" == trusted, (step, host)
        assert trusted.count("BEGIN CERTIFICATE") == (1 if step in ("finish", "cert") else 2), step
        restarted = lab.started() != started
        assert restarted == (step in ("switch", "cert")), step
        for host, (pulls, failures) in results.items():
            assert pulls >= 5, (step, host, pulls)
            if not restarted:
                assert not failures, (step, host, failures)
        cost[step] = {host: len(failures) for host, (_, failures) in results.items()}
        assert lab.deploy(RULES).changed_hosts() == set(), step
    print(f"failed pulls per host and step (single server): {cost}")
    # The old CA is trusted nowhere, and the server's certificate is the new CA's.
    assert old_ca not in pki.trusted_pem(tls)
    for ca, expected in ((old_ca, "000 60"), ((tls / pki.CA_CERT).read_text(), "401 0")):
        answer = lab.access.ssh("client1", "cat > /tmp/one-ca.crt; curl -s -o /dev/null -w '%{http_code}' "
                                           f"--cacert /tmp/one-ca.crt https://{REGISTRY}/v2/; echo \" $?\"",
                                stdin=ca, check=False)
        assert answer == expected, answer  # 60: the certificate does not verify with the old CA
    assert lab.ssh("client1", f"docker pull -q {REGISTRY}/team-b/app:1")


def test_a_new_token_signing_key_restarts_the_registry_and_pulls_go_on(lab):
    """The registry trusts the signing certificate (its rootcertbundle) only from its start: a new key
    (the old one deleted, or past its renewal date) recreates the registry with the token service, and
    the old tokens' key is trusted no more."""
    tls = lab.work / "tls"
    old_cert = (tls / pki.TOKEN_CERT).read_text()
    (tls / pki.TOKEN_KEY).unlink()
    started = lab.started()
    result = lab.deploy(RULES)
    assert (tls / pki.TOKEN_CERT).read_text() != old_cert
    assert lab.started() != started, result.changes()
    assert lab.ssh("registry", "cat /etc/regdeploy/auth/token-signing.crt") + "\n" == (tls / pki.TOKEN_CERT).read_text()
    assert lab.ssh("client1", f"docker pull -q {REGISTRY}/team-b/app:1")
    assert _cri_pull(lab, "client4", "team-b/app:1")[0] == 0
    assert lab.deploy(RULES).changed_hosts() == set()


def test_no_secret_in_output_process_lists_or_files_others_may_read(lab):
    result = run_deploy(lab.inventory(RULES), "--debug")
    signing_key = (lab.work / "tls" / "token-signing.key").read_text()
    key_body = "".join(signing_key.splitlines()[1:-1])
    secrets = [*lab.every_password, key_body[:40]]
    text = result.stderr + str(result.output)
    assert not [s for s in secrets if s in text]
    for host in LOGINS:
        processes = lab.ssh(host, "ps -eo args")
        assert not [s for s in lab.every_password if s in processes], host
        # Every file others may read under the places regdeploy writes: none holds a secret.
        readable = lab.ssh(host, "find /etc/regdeploy /etc/docker /root/.docker /root/.config /usr/local/lib/regdeploy "
                                 "/etc/systemd/system /etc/containerd /home -xdev -type f -perm -o+r 2>/dev/null | xargs -r cat",
                           check=False)
        assert not [s for s in secrets if s in readable], host
    modes = lab.ssh("registry", "stat -c '%a %U %n' /etc/regdeploy/token/config.json /etc/regdeploy/token/signing.key "
                                "/etc/regdeploy/auth/htpasswd /etc/regdeploy/api-credentials")
    assert all(line.startswith("600 root ") for line in modes.splitlines()), modes
    journal = lab.ssh("registry", f"journalctl -u {registry_files.TOKEN_UNIT} --no-pager -o cat")
    assert "token account=nodes" in journal and not [s for s in lab.every_password if s in journal]


def test_the_verify_suite_passes_against_this_fleet(lab):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/verify",
         f"--inventory={lab.inventory(RULES)}", f"--test-image-archive={ACCESS_LAB.test_image_archive}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-500:]


def test_emptying_the_rules_goes_back_to_htpasswd_in_one_run(lab):
    """Last: the token service and its files go once the registry no longer points at it; every image
    stays, and each host's login still works (htpasswd, every account may do everything)."""
    result = lab.deploy([])
    assert ("Remove the registry's token service | Stop regdeploy-token and remove its files (registry_access is empty)",
            "registry") in result.changes()
    assert lab.deploy([]).changed_hosts() == set()
    assert lab.ssh("registry", f"systemctl cat {registry_files.TOKEN_UNIT} >/dev/null 2>&1 || echo gone") == "gone"
    assert lab.ssh("registry", "ls /usr/local/lib/regdeploy /etc/regdeploy/token 2>&1 | grep -c 'No such file'") == "2"
    assert lab.ssh("registry", "ls /etc/regdeploy/auth") == "htpasswd"
    config = lab.ssh("registry", "cat /etc/regdeploy/config.yml")
    assert "htpasswd:" in config and "token:" not in config
    assert lab.ssh("client1", f"docker pull -q {REGISTRY}/team-b/app:1")
    ok = _push(lab, "client1", "team-b/app")  # no rules: nodes may push again
    assert ok.returncode == 0, ok.stdout + ok.stderr
