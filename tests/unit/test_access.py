"""Accounts with rights: the rules as the inventory gives them (checked before any host is touched),
what the token service grants, and the service itself over HTTPS on loopback: passwords checked
against bcrypt hashes, tokens signed with the key the registry trusts, files re-read when they change."""

from __future__ import annotations

import base64
import json
import os
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request

import bcrypt
import jwt
import pytest
from cryptography import x509

from regdeploy import access, pki, registry_files, token_service
from regdeploy.settings import ConfigError, validate_hosts

RULES = ["ci * pull,push,delete", "nodes * pull", "robot-a team-a/* pull,push", "anonymous public/* pull"]
USERS = ("ci", "nodes", "robot-a")


@pytest.mark.parametrize("text,expected", [
    ("ci * pull,push,delete", access.Rule("ci", "*", ("pull", "push", "delete"))),
    ("robot-a team-a/* PUSH,pull", access.Rule("robot-a", "team-a/*", ("pull", "push"))),
    ("anonymous public/* pull", access.Rule("anonymous", "public/*", ("pull",))),
    ("ops library/app delete", access.Rule("ops", "library/app", ("delete",))),
])
def test_rules_parse(text, expected):
    assert access.parse_rule(text) == expected


@pytest.mark.parametrize("text,said", [
    ("ci *", "is not 'ACCOUNT PATTERN ACTIONS'"),
    ("ci * pull,write", "unknown action write"),
    ("ci team-a/* push", "gives push without pull"),
    ("anonymous * pull,push", "anonymous requests may only pull"),
    ("ci Team-A/* pull", "has upper-case letters"),
    ("ci app:latest pull", "names a tag or digest"),
    ("ci team-a/ pull", "matches no repository name"),
    ("ci /app pull", "matches no repository name"),
    ("ci team-a//* pull", "matches no repository name"),
])
def test_rules_that_cannot_mean_what_was_meant_are_refused(text, said):
    with pytest.raises(access.AccessError, match=said):
        access.parse_rule(text)


@pytest.mark.parametrize("account,repository,expected", [
    ("robot-a", "team-a/app", ("pull", "push")),
    ("robot-a", "team-a/tools/app", ("pull", "push")),  # `*` crosses slashes
    ("robot-a", "team-b/app", ()),
    ("robot-a", "team-a", ()),  # the namespace itself is not under it
    ("nodes", "team-b/app", ("pull",)),
    ("ci", "anything/at/all", ("pull", "push", "delete")),
    ("anonymous", "public/base", ("pull",)),
    ("anonymous", "team-a/app", ()),
    ("stranger", "public/base", ()),  # an account without rules gets nothing, not anonymous' rights
])
def test_an_account_gets_the_union_of_its_matching_rules(account, repository, expected):
    assert access.allowed(access.parse_rules(RULES), account, repository) == expected


def test_a_token_grants_the_requested_actions_the_rules_allow():
    rules = [r.as_config() for r in access.parse_rules(RULES)]
    assert token_service.grant(rules, "nodes", ["repository:team-a/app:pull,push"]) == [
        {"type": "repository", "name": "team-a/app", "actions": ["pull"]}]
    assert token_service.grant(rules, "robot-a", ["repository:team-b/app:pull,push"])[0]["actions"] == []
    # The catalog names every repository: only for an account that may pull '*'.
    assert token_service.grant(rules, "ci", ["registry:catalog:*"])[0]["actions"] == ["*"]
    assert token_service.grant(rules, "robot-a", ["registry:catalog:*"])[0]["actions"] == []
    assert token_service.grant(rules, "ci", ["nonsense", ""]) == []


def test_an_unknown_account_and_a_server_locked_out_are_refused_before_any_host():
    base = {"registry_tls": True, "registry_auth": True, "registry_users": list(USERS), "registry_access": RULES}
    hosts = [("reg1", {**base, "registry_login_user": "ci"}, {"registry_servers"}),
             ("c1", {**base, "registry_login_user": "nodes"}, {"docker_clients"}),
             ("build1", {**base, "registry_login_user": "robot-a"}, {"docker_clients"})]
    settings = validate_hosts(hosts, check_files=False)
    assert settings["c1"].login_user == "nodes" and settings["build1"].login_user == "robot-a"

    unknown = {**base, "registry_access": [*RULES, "ghost * pull"]}
    with pytest.raises(ConfigError, match="names the account 'ghost', which is not one of registry_users"):
        validate_hosts([(n, {**d, **unknown}, g) for n, d, g in hosts], check_files=False)
    with pytest.raises(ConfigError, match="would lock out regdeploy's own scripts"):
        validate_hosts([("reg1", {**base, "registry_login_user": "nodes"}, {"registry_servers"}), *hosts[1:]],
                       check_files=False)
    lonely = {**base, "registry_users": [*USERS, "lonely"], "registry_login_user": "lonely"}
    with pytest.raises(ConfigError, match="host 'c1' logs in as 'lonely', which no registry_access rule allows"):
        validate_hosts([("reg1", {**base, "registry_users": lonely["registry_users"], "registry_login_user": "ci"},
                         {"registry_servers"}), ("c1", lonely, {"docker_clients"})], check_files=False)
    with pytest.raises(ConfigError, match="registry_access needs registry_auth=true"):
        validate_hosts([("reg1", {"registry_access": RULES}, {"registry_servers"})], check_files=False)


def test_the_registry_trusts_the_token_service_and_sends_clients_there(tmp_path):
    from regdeploy.settings import validate_hosts as validate

    data = {"registry_tls": True, "registry_auth": True, "registry_users": ["ci"], "registry_access": ["ci * pull,push"],
            "registry_tls_dir": str(tmp_path)}
    settings = validate([("reg1", data, {"registry_servers"})], check_files=False)["reg1"]
    config = registry_files.registry_config(settings)
    assert '    realm: "https://reg1:5002/token"' in config
    assert "    rootcertbundle: /auth/token-signing.crt" in config and "htpasswd" not in config
    service = json.loads(registry_files.token_service_config(settings))
    assert service["rules"] == [{"account": "ci", "pattern": "*", "actions": ["pull", "push"]}]
    assert service["htpasswd"] == registry_files.htpasswd_path(settings)


# The service itself, over HTTPS on loopback.

def _htpasswd(path, users: dict[str, str]) -> None:
    path.write_text("".join(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}\n" for u, p in users.items()))


@pytest.fixture
def service(tmp_path):
    material, _ = pki.generated_material(tmp_path / "tls", ["localhost", "127.0.0.1"])
    signing, _ = pki.token_signing_material(tmp_path / "tls")
    for name, text in (("registry.crt", material.cert_pem), ("registry.key", material.key_pem)):
        (tmp_path / name).write_text(text)
    _htpasswd(tmp_path / "htpasswd", {"ci": "ci-pass", "nodes": "nodes-pass", "robot-a": "robot-pass"})
    config = access.token_config(access.parse_rules(RULES[:3]), listen="127.0.0.1:0",
                                 htpasswd=str(tmp_path / "htpasswd"),
                                 signing_key=str(tmp_path / "tls" / pki.TOKEN_KEY),
                                 signing_cert=str(tmp_path / "tls" / pki.TOKEN_CERT),
                                 tls_cert=str(tmp_path / "registry.crt"), tls_key=str(tmp_path / "registry.key"),
                                 previous_htpasswd=str(tmp_path / "htpasswd.previous"))
    (tmp_path / "config.json").write_text(json.dumps(config))
    server = token_service.make_server(str(tmp_path / "config.json"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    context = ssl.create_default_context(cafile=str(tmp_path / "tls" / pki.CA_CERT))
    cert = x509.load_pem_x509_certificate(signing.cert_pem.encode())

    class Client:
        port = server.server_address[1]
        directory = tmp_path

        def ask(self, scopes=(), user=None, password=None, method="GET", service_name=access.SERVICE):
            query = [("service", service_name), *(("scope", s) for s in scopes)]
            url = f"https://localhost:{self.port}/token"
            headers = {}
            body = None
            if method == "GET":
                url += "?" + urllib.parse.urlencode(query)
                if user is not None:
                    headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            else:
                body = urllib.parse.urlencode([("grant_type", "password"), ("username", user or ""),
                                               ("password", password or ""), ("service", service_name),
                                               ("scope", " ".join(scopes))]).encode()
            request = urllib.request.Request(url, data=body, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, context=context, timeout=10) as response:
                    answer = json.loads(response.read())
            except urllib.error.HTTPError as exc:
                return exc.code, None
            # What the registry checks: the signature with the trusted certificate's key, audience, issuer.
            claims = jwt.decode(answer["token"], cert.public_key(), algorithms=["ES256"], audience=access.SERVICE,
                                issuer=access.ISSUER)
            header = jwt.get_unverified_header(answer["token"])
            assert header["x5c"] == [base64.b64encode(cert.public_bytes(
                __import__("cryptography.hazmat.primitives.serialization", fromlist=["Encoding"]).Encoding.DER)).decode()]
            return 200, claims

    yield Client()
    server.shutdown()
    server.server_close()


def test_the_service_grants_per_account_and_refuses_a_wrong_password(service):
    status, claims = service.ask(["repository:team-a/app:pull,push"], "robot-a", "robot-pass")
    assert status == 200 and claims["sub"] == "robot-a"
    assert claims["access"] == [{"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]}]
    assert claims["exp"] - claims["iat"] == access.TOKEN_LIFETIME
    _, claims = service.ask(["repository:team-b/app:pull,push"], "robot-a", "robot-pass")
    assert claims["access"][0]["actions"] == []
    _, claims = service.ask(["repository:team-b/app:pull,push"], "nodes", "nodes-pass")
    assert claims["access"][0]["actions"] == ["pull"]
    assert service.ask(["repository:team-a/app:pull"], "robot-a", "wrong")[0] == 401
    assert service.ask(["repository:team-a/app:pull"], "ghost", "robot-pass")[0] == 401
    assert service.ask(["repository:team-a/app:pull"], "robot-a", "robot-pass", service_name="other")[0] == 400
    # containerd asks with OAuth2's password grant first.
    status, claims = service.ask(["repository:team-a/app:pull"], "robot-a", "robot-pass", method="POST")
    assert status == 200 and claims["access"][0]["actions"] == ["pull"]
    assert service.ask(["repository:team-a/app:pull"], "robot-a", "wrong", method="POST")[0] == 401
    # docker login asks with no scope: a token that allows nothing, proof the password is right.
    status, claims = service.ask([], "nodes", "nodes-pass")
    assert status == 200 and claims["access"] == []


def test_anonymous_pull_only_where_a_rule_allows_it_and_files_are_reread(service):
    assert service.ask(["repository:public/base:pull"])[0] == 401  # no anonymous rule
    config_path = service.directory / "config.json"
    config = json.loads(config_path.read_text())
    config["rules"].append({"account": "anonymous", "pattern": "public/*", "actions": ["pull"]})
    config_path.write_text(json.dumps(config))  # re-read without a restart
    status, claims = service.ask(["repository:public/base:pull,push", "repository:team-a/app:pull"])
    assert status == 200 and claims["sub"] == ""
    assert [a["actions"] for a in claims["access"]] == [["pull"], []]
    # A password rotated in htpasswd takes at once; the old one is refused.
    _htpasswd(service.directory / "htpasswd", {"ci": "ci-new", "nodes": "nodes-pass", "robot-a": "robot-pass"})
    os.utime(service.directory / "htpasswd", ns=(1, 1))  # a rewrite within the same clock tick still differs
    assert service.ask(["registry:catalog:*"], "ci", "ci-pass")[0] == 401
    status, claims = service.ask(["registry:catalog:*"], "ci", "ci-new")
    assert status == 200 and claims["access"][0]["actions"] == ["*"]


def test_a_rotated_password_overlaps_while_the_previous_hashes_are_kept(service):
    from regdeploy import credentials

    current = (service.directory / "htpasswd").read_text()
    new = {"ci": "ci-pass", "nodes": "nodes-rotated", "robot-a": "robot-pass"}
    rotated = credentials.rotated_entries(current, new)
    assert [line.split(":")[0] for line in rotated.splitlines()] == ["nodes"]
    assert credentials.rotated_entries(current, {"ci": "ci-pass"}) == ""  # a removed user is not rotated
    # The deploy's order: previous hashes, then the new htpasswd; both passwords work.
    (service.directory / "htpasswd.previous").write_text(rotated)
    _htpasswd(service.directory / "htpasswd", new)
    assert service.ask([], "nodes", "nodes-pass")[0] == 200
    assert service.ask([], "nodes", "nodes-rotated")[0] == 200
    assert service.ask([], "ci", "nodes-pass")[0] == 401  # another user's previous password is not ci's
    # Every host logged in again: the previous hashes go, and the old password with them.
    (service.directory / "htpasswd.previous").unlink()
    assert service.ask([], "nodes", "nodes-pass")[0] == 401
    assert service.ask([], "nodes", "nodes-rotated")[0] == 200


def test_a_reissued_tls_certificate_serves_the_next_connection_without_a_restart(service):
    import socket

    def served() -> bytes:
        context = ssl.create_default_context(cafile=str(service.directory / "tls" / pki.CA_CERT))
        with socket.create_connection(("127.0.0.1", service.port)) as raw:
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                return tls.getpeercert(binary_form=True)

    before = served()
    (service.directory / "tls" / pki.SERVER_CERT).unlink()  # re-issued by the next generated_material
    material, _ = pki.generated_material(service.directory / "tls", ["localhost", "127.0.0.1"])
    (service.directory / "registry.key").write_text(material.key_pem)
    assert served() == before  # the key changed, the certificate not yet: the old pair serves
    (service.directory / "registry.crt").write_text(material.cert_pem)
    assert served() != before
    assert service.ask([], "ci", "ci-pass")[0] == 200


def test_a_client_that_never_speaks_does_not_hold_the_service(service):
    import socket

    idle = socket.create_connection(("127.0.0.1", service.port))
    try:
        assert service.ask([], "ci", "ci-pass")[0] == 200
    finally:
        idle.close()
