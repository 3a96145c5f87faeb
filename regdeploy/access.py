"""Accounts with rights (`registry_access`): the rules parsed and checked before any host is touched,
and what the token service on each registry server is given. Pure: no pyinfra, no host.

A rule is `ACCOUNT PATTERN ACTIONS`: `ci * pull,push,delete`, `robot-a team-a/* pull,push`,
`nodes * pull`, `anonymous public/* pull`. The evaluation itself (which actions an account gets on
a repository) is regdeploy.token_service's, the code that runs on the server, so the controller
and the service cannot read a rule differently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .reference import PATH_COMPONENT
from .token_service import ACTIONS, ANONYMOUS, granted

# distribution's repository name grammar (without a domain): reference's path components, separated by `/`.
REPOSITORY = re.compile(rf"{PATH_COMPONENT}(?:/{PATH_COMPONENT})*")
# What regdeploy's own scripts on the server do as its registry_login_user: list the catalog and read
# every repository (gc, backup, verify), push the seed images and restored repositories.
SERVER_NEEDS = ("pull", "push")
# The service names itself in tokens, and the registry accepts only its own: both take it from here.
SERVICE = "regdeploy-registry"
ISSUER = "regdeploy-token-service"
# What the token service runs with on the server: Debian's python3, PyJWT, bcrypt, cryptography (ES256).
TOKEN_PACKAGES = ("python3", "python3-jwt", "python3-bcrypt", "python3-cryptography")
TOKEN_LIFETIME = 300  # seconds: a client asks again for each pull or push after that


class AccessError(ValueError):
    """A rule that cannot be what the operator meant; the message says which and why."""


@dataclass(frozen=True)
class Rule:
    account: str
    pattern: str
    actions: tuple[str, ...]

    def as_config(self) -> dict:
        return {"account": self.account, "pattern": self.pattern, "actions": list(self.actions)}

    def __str__(self) -> str:
        return f"{self.account} {self.pattern} {','.join(self.actions)}"


def pattern_problem(pattern: str) -> str:
    """Why `pattern` can match no repository name (empty: it can)."""
    if ":" in pattern or "@" in pattern:
        return "names a tag or digest; rules are per repository (e.g. 'team-a/*')"
    if pattern != pattern.lower():
        return "has upper-case letters, and repository names are lower case: it would match nothing"
    # `*` stands for at least one character of a name (a pattern of `*` alone matches every name).
    if not REPOSITORY.fullmatch(pattern.replace("*", "x")):
        return ("matches no repository name (lower-case letters, digits and . _ - in components separated "
                "by single slashes, no slash at either end)")
    return ""


def parse_rule(text: str) -> Rule:
    parts = text.split()
    if len(parts) != 3:
        raise AccessError(f"registry_access rule {text!r} is not 'ACCOUNT PATTERN ACTIONS'")
    account, pattern, listed = parts
    actions = [a for a in listed.lower().split(",") if a]
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown or not actions:
        raise AccessError(f"registry_access rule {text!r}: unknown action {', '.join(unknown) or '(none)'}; "
                          f"actions are {', '.join(ACTIONS)}")
    problem = pattern_problem(pattern)
    if problem:
        raise AccessError(f"registry_access rule {text!r}: the pattern {pattern!r} {problem}")
    if "push" in actions and "pull" not in actions:
        raise AccessError(f"registry_access rule {text!r} gives push without pull: a push asks for both "
                          "(the client checks which layers are there first). Give 'pull,push'")
    if account == ANONYMOUS and set(actions) - {"pull"}:
        raise AccessError(f"registry_access rule {text!r}: anonymous requests may only pull")
    return Rule(account, pattern, tuple(a for a in ACTIONS if a in actions))


def parse_each(texts, parse, error: type[ValueError]) -> tuple:
    """`parse` of every text, or one `error` naming every text it refused."""
    parsed, problems = [], []
    for text in texts:
        try:
            parsed.append(parse(text))
        except error as exc:
            problems.append(str(exc))
    if problems:
        raise error("; ".join(problems))
    return tuple(parsed)


def parse_rules(texts) -> tuple[Rule, ...]:
    """Every rule, or one AccessError naming every bad one."""
    return parse_each(texts, parse_rule, AccessError)


def rule_problems(rules: tuple[Rule, ...], users: tuple[str, ...]) -> list[str]:
    """Accounts the rules name that do not exist."""
    return [f"registry_access rule '{rule}' names the account {rule.account!r}, which is not one of "
            f"registry_users ({', '.join(users) or 'none'}) nor {ANONYMOUS!r}"
            for rule in rules if rule.account != ANONYMOUS and rule.account not in users]


def allowed(rules: tuple[Rule, ...], account: str, repository: str) -> tuple[str, ...]:
    return tuple(granted([r.as_config() for r in rules], account, repository))


def login_problems(rules: tuple[Rule, ...], host: str, user: str, is_server: bool) -> list[str]:
    """What is wrong with `host` logging in as `user` under `rules`: the server's account must do what
    regdeploy's own scripts do there, and any host's account must be allowed something."""
    if is_server:
        missing = [a for a in SERVER_NEEDS if not any(r.account == user and r.pattern == "*" and a in r.actions
                                                      for r in rules)]
        if missing:
            return [f"host {host!r} is a registry server and logs in as {user!r}, whose rules do not give "
                    f"{','.join(missing)} on '*': that would lock out regdeploy's own scripts there (catalog, gc, "
                    f"backup, restore, seeding). Add the rule '{user} * pull,push' (or log the server in as an "
                    "account that has it: registry_login_user)"]
        return []
    if not any(r.account == user for r in rules):
        return [f"host {host!r} logs in as {user!r}, which no registry_access rule allows anything: its pulls "
                f"would be refused. Add a rule such as '{user} * pull', or set its registry_login_user"]
    return []


def token_config(rules: tuple[Rule, ...], *, listen: str, htpasswd: str, signing_key: str, signing_cert: str,
                 tls_cert: str, tls_key: str, previous_htpasswd: str = "") -> dict:
    """The token service's config.json (paths on the server). `previous_htpasswd`: the hashes of
    passwords being rotated, accepted too while that file exists."""
    return {"service": SERVICE, "issuer": ISSUER, "lifetime": TOKEN_LIFETIME, "listen": listen,
            "htpasswd": htpasswd, "previous_htpasswd": previous_htpasswd,
            "signing_key": signing_key, "signing_cert": signing_cert,
            "tls_cert": tls_cert, "tls_key": tls_key, "rules": [r.as_config() for r in rules]}
