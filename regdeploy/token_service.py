#!/usr/bin/python3
"""regdeploy's token service: who may pull, push and delete what, for distribution's token
authentication (https://distribution.github.io/distribution/spec/auth/token/).

The registry answers an unauthenticated request with `401` and `WWW-Authenticate: Bearer
realm=<this service>`; the client (Docker, containerd, Podman) asks this service for a token for the
scopes it needs (`repository:team-a/app:pull,push`), with the account's password as HTTP basic
authentication (GET) or an OAuth2 password grant (POST, containerd). The service checks the password
against the registry's htpasswd (bcrypt), grants the requested actions the rules allow (a subset:
a pull-only account asking for pull,push gets pull) and signs a short-lived JWT (ES256, the signing
certificate in its `x5c` header) that the registry verifies with the certificate in its
`rootcertbundle`. The registry then allows or denies each request by the token's `access`.

This file runs on the registry server as it is, with Debian's python3, python3-jwt (PyJWT) and
python3-bcrypt: `python3 token_service.py CONFIG.json`. The rule evaluation (`granted`,
`pattern_matches`) is also what regdeploy validates rules with on the controller
(regdeploy.access), so both read the rules alike. Nothing here is cryptography of its own: PyJWT
signs, bcrypt checks passwords, Python's ssl serves HTTPS.

The config (JSON, root only) and the htpasswd file are re-read when they change: a new rule, account
or password takes effect without a restart.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import re
import secrets
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ACTIONS = ("pull", "push", "delete")
ANONYMOUS = "anonymous"  # the account of a request without credentials
CATALOG = ("registry", "catalog", "*")  # the scope of /v2/_catalog
TOKEN_PATH = "/token"
HEALTH_PATH = "/healthz"


def pattern_matches(pattern: str, repository: str) -> bool:
    """A repository pattern: `*` matches any characters, `/` included (`team-a/*` matches
    `team-a/app` and `team-a/tools/app`); everything else matches itself."""
    regex = "".join(".*" if c == "*" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, repository) is not None


def granted(rules: list[dict], account: str, repository: str) -> list[str]:
    """The actions the rules give `account` on `repository` (the union of every matching rule), in
    ACTIONS' order. A rule: {"account": ..., "pattern": ..., "actions": [...]}."""
    found: set[str] = set()
    for rule in rules:
        if rule["account"] == account and pattern_matches(rule["pattern"], repository):
            found.update(rule["actions"])
    return [action for action in ACTIONS if action in found]


def may_list_catalog(rules: list[dict], account: str) -> bool:
    """/v2/_catalog names every repository: only an account that may pull every repository sees it."""
    return any(r["account"] == account and r["pattern"] == "*" and "pull" in r["actions"] for r in rules)


def parse_scope(scope: str) -> tuple[str, str, list[str]] | None:
    """`type:name:actions` (the name may hold a colon: split at the first and the last); None if malformed."""
    kind, _, rest = scope.partition(":")
    name, _, actions = rest.rpartition(":")
    if not kind or not name:
        return None
    return kind, name, [a for a in actions.split(",") if a]


def grant(rules: list[dict], account: str, scopes: list[str]) -> list[dict]:
    """The token's `access` claim: for each requested scope, the requested actions the rules allow."""
    access = []
    for scope in scopes:
        parsed = parse_scope(scope)
        if parsed is None:
            continue
        kind, name, requested = parsed
        if kind == "repository":
            allowed = granted(rules, account, name)
            actions = [a for a in requested if a in allowed]
        elif (kind, name) == CATALOG[:2] and "*" in requested and may_list_catalog(rules, account):
            actions = ["*"]
        else:
            actions = []
        access.append({"type": kind, "name": name, "actions": actions})
    return access


class Reloading:
    """A file's parsed content, parsed again when its size or mtime changes. `missing`: what an
    absent file reads as (None: an absent file is an error)."""

    def __init__(self, path: str, parse, missing=None):
        self.path, self.parse, self.missing = path, parse, missing
        self._seen: tuple | None = None
        self._value = None
        self._lock = threading.Lock()

    def get(self):
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if self.missing is None:
                raise
            return self.missing
        seen = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        with self._lock:
            if seen != self._seen:
                with open(self.path, encoding="utf-8") as handle:
                    self._value = self.parse(handle.read())
                self._seen = seen
            return self._value


def parse_htpasswd(text: str) -> dict[str, str]:
    users = {}
    for line in text.splitlines():
        user, colon, hashed = line.strip().partition(":")
        if colon and user and not user.startswith("#"):
            users[user] = hashed
    return users


class Accounts:
    """Checks passwords against the htpasswd's bcrypt hashes. A bcrypt check costs tens of
    milliseconds by design; a password already found right for the same hash is answered from memory
    (keyed by a salted SHA-256, never the password), so a client asking for a token per pull pays it
    once. A wrong password is never remembered: each guess costs a bcrypt check, and guesses cannot
    fill the memory and push the right ones out.

    `previous`: the hashes of passwords being rotated (htpasswd.previous), also accepted while the file
    is there: a deploy writes it before the new htpasswd and removes it once every host has logged in
    with the new password, so no host's pull fails in between."""

    def __init__(self, htpasswd: Reloading, previous: Reloading | None = None):
        self.htpasswd, self.previous = htpasswd, previous
        self._salt = secrets.token_bytes(16)
        self._checked: dict[bytes, bool] = {}  # only True: see above
        self._lock = threading.Lock()

    def check(self, user: str, password: str) -> bool:
        if not password:
            return False
        hashes = [self.htpasswd.get().get(user)] + ([self.previous.get().get(user)] if self.previous else [])
        return any(self._matches(user, password, hashed) for hashed in hashes if hashed)

    def _matches(self, user: str, password: str, hashed: str) -> bool:
        import bcrypt

        key = hashlib.sha256(self._salt + b"\0".join(p.encode() for p in (user, password, hashed))).digest()
        with self._lock:
            if key in self._checked:
                return self._checked[key]
        try:
            ok = bcrypt.checkpw(password.encode(), hashed.encode())
        except ValueError:
            ok = False
        if ok:
            with self._lock:
                if len(self._checked) > 4096:  # accounts times their hashes: a rotation adds one each
                    self._checked.clear()
                self._checked[key] = True
        return ok


class Signer:
    """Signs tokens with the key whose certificate the registry trusts (`x5c` names it)."""

    def __init__(self, key_path: str, cert_path: str):
        with open(key_path, encoding="utf-8") as handle:
            self.key = handle.read()
        with open(cert_path, encoding="utf-8") as handle:
            pem = handle.read()
        self.x5c = [base64.b64encode(ssl.PEM_cert_to_DER_cert(pem)).decode()]

    def token(self, claims: dict) -> str:
        import jwt

        return jwt.encode(claims, self.key, algorithm="ES256", headers={"x5c": self.x5c})


class Service:
    def __init__(self, config_path: str):
        self.config = Reloading(config_path, json.loads)
        config = self.config.get()
        previous = config.get("previous_htpasswd")
        self.accounts = Accounts(Reloading(config["htpasswd"], parse_htpasswd),
                                 Reloading(previous, parse_htpasswd, missing={}) if previous else None)
        self.signer = Signer(config["signing_key"], config["signing_cert"])

    def issue(self, account: str, service: str, scopes: list[str]) -> tuple[int, dict]:
        config = self.config.get()
        if service and service != config["service"]:
            return 400, {"errors": [{"code": "DENIED", "message": f"unknown service {service!r}"}]}
        now = int(time.time())
        lifetime = int(config.get("lifetime", 300))
        access = grant(config["rules"], account, scopes)
        claims = {"iss": config["issuer"], "sub": "" if account == ANONYMOUS else account, "aud": config["service"],
                  "exp": now + lifetime, "nbf": now - 10, "iat": now, "jti": secrets.token_hex(16),
                  "access": access}
        token = self.signer.token(claims)
        issued = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        log(f"token account={account} " + " ".join(
            f"{a['type']}:{a['name']}:{','.join(a['actions']) or '-'}" for a in access))
        return 200, {"token": token, "access_token": token, "expires_in": lifetime, "issued_at": issued}

    def anonymous_allowed(self) -> bool:
        return any(rule["account"] == ANONYMOUS for rule in self.config.get()["rules"])


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        user, colon, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return (user, password) if colon else None


def handler_for(service: Service):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "regdeploy-token"

        def log_message(self, format, *args):  # the access log would repeat each token line
            pass

        def _send(self, status: int, body: dict, challenge: bool = False) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            if challenge:
                self.send_header("WWW-Authenticate", 'Basic realm="regdeploy"')
            self.end_headers()
            self.wfile.write(data)

        def _unauthorized(self, why: str) -> None:
            log(f"refused: {why}")
            self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}, True)

        def _answer(self, credentials: tuple[str, str] | None, service_name: str, scopes: list[str]) -> None:
            if credentials is None:
                if not service.anonymous_allowed():
                    return self._unauthorized("no credentials, and no rule for anonymous")
                account = ANONYMOUS
            else:
                user, password = credentials
                if user == ANONYMOUS or not service.accounts.check(user, password):
                    return self._unauthorized(f"wrong user name or password for {user!r}")
                account = user
            status, body = service.issue(account, service_name, scopes)
            self._send(status, body)

        def do_GET(self):
            url = urlsplit(self.path)
            if url.path == HEALTH_PATH:
                return self._send(200, {"status": "ok"})
            if url.path != TOKEN_PATH:
                return self._send(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
            query = parse_qs(url.query)
            header = self.headers.get("Authorization")
            credentials = basic_credentials(header)
            if header and credentials is None:
                return self._unauthorized("unreadable Authorization header")
            self._answer(credentials, query.get("service", [""])[0], query.get("scope", []))

        def do_POST(self):
            """OAuth2's password grant (containerd asks this way first)."""
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode()) if 0 < length < 65536 else {}
            if url.path != TOKEN_PATH:
                return self._send(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
            if form.get("grant_type", [""])[0] != "password":
                return self._send(400, {"error": "unsupported_grant_type"})
            credentials = (form.get("username", [""])[0], form.get("password", [""])[0])
            scopes = [s for joined in form.get("scope", []) for s in joined.split(" ") if s]
            self._answer(credentials, form.get("service", [""])[0], scopes)

    return Handler


class TlsServer(ThreadingHTTPServer):
    """HTTPS, the handshake made in each connection's own thread: a client that connects and never
    speaks holds only its thread, for at most `timeout` seconds."""

    daemon_threads = True
    timeout_seconds = 30

    def __init__(self, address, handler, contexts: "Contexts"):
        super().__init__(address, handler)
        self.contexts = contexts

    def finish_request(self, request, client_address):
        request.settimeout(self.timeout_seconds)
        try:
            connection = self.contexts.get().wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        self.RequestHandlerClass(connection, client_address, self)


class Contexts:
    """The TLS certificate and key, loaded again for the next connection once either file changed: a
    re-issued certificate takes without a restart. While the pair does not match (one written, not
    yet the other), the previous pair serves."""

    def __init__(self, cert: str, key: str):
        self.cert, self.key = cert, key
        self._seen: tuple = ()
        self._context: ssl.SSLContext | None = None
        self._lock = threading.Lock()

    def get(self) -> ssl.SSLContext:
        seen = tuple((s.st_mtime_ns, s.st_size, s.st_ino) for s in map(os.stat, (self.cert, self.key)))
        with self._lock:
            if seen != self._seen:
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                try:
                    context.load_cert_chain(self.cert, self.key)
                except ssl.SSLError:
                    if self._context is None:
                        raise
                    return self._context
                self._context, self._seen = context, seen
            assert self._context is not None
            return self._context


def make_server(config_path: str) -> TlsServer:
    service = Service(config_path)
    config = service.config.get()
    host, _, port = config["listen"].rpartition(":")
    contexts = Contexts(config["tls_cert"], config["tls_key"])
    contexts.get()  # a pair that cannot serve stops the service at its start, said in its journal
    return TlsServer((host.strip("[]") or "0.0.0.0", int(port)), handler_for(service), contexts)


def serve(config_path: str) -> None:
    server = make_server(config_path)
    host, port = server.server_address[:2]
    log(f"regdeploy token service listening on {host!s}:{port}")
    server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: token_service.py CONFIG.json")
    serve(sys.argv[1])
