"""Registry accounts: passwords from the environment or an untracked file (never the inventory),
bcrypt hashes for the registry's htpasswd, and every comparison made by verifying a password against
a hash (bcrypt salts differ on every hash, so hash texts never compare equal).

Passwords travel to hosts only on a command's stdin (pyinfra's `_stdin`): never in a command line
(the process list), an operation name, pyinfra's output or its JSON.
"""

from __future__ import annotations

import functools
import os
import re
import stat
from pathlib import Path
from typing import Mapping

import bcrypt

ENV_PREFIX = "REGDEPLOY_PASSWORD_"
PROXY_ENV = "REGDEPLOY_PROXY_PASSWORD"  # the pull-through cache's upstream password
S3_ENV = "REGDEPLOY_S3_SECRET"  # the S3 secret key (registry_storage=s3)
HTTP_SECRET_ENV = "REGDEPLOY_HTTP_SECRET"  # the replicas' shared http.secret
# bcrypt's work factor. The registry accepts any; 10 is `htpasswd -B`'s default, and each hash or
# check costs a visible share of a second, so a deploy checks each (password, hash) pair once per run
# (verify() is cached).
BCRYPT_ROUNDS = 10
BCRYPT_MAX_BYTES = 72  # bcrypt ignores the rest, and the bcrypt library refuses longer passwords


class CredentialError(ValueError):
    """A missing or unusable password; the message says where to put it."""


def env_name(user: str) -> str:
    """The environment variable holding `user`'s password: REGDEPLOY_PASSWORD_<USER>, upper case,
    every character other than a letter or digit as `_`."""
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", user).upper()


def _private_text(path: str, variable: str) -> str | None:
    """The text of a controller file holding passwords; None if there is none. Refused if others may read it."""
    file = Path(path)
    if not file.is_file():
        return None
    mode = stat.S_IMODE(file.stat().st_mode)
    if mode & 0o077:
        raise CredentialError(f"{variable} {path!r} has mode {mode:03o}: others may read the "
                              f"passwords in it. Run `chmod 600 {path}` and deploy again")
    return file.read_text()


def read_password_file(path: str) -> dict[str, str]:
    """`user:password` lines (the password is everything after the first colon); # comments."""
    text = _private_text(path, "registry_password_file")
    if text is None:
        return {}
    passwords = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, colon, password = line.partition(":")
        if not colon:
            raise CredentialError(f"{path} line {number} is not `user:password`")
        passwords[user.strip()] = password
    return passwords


def load_passwords(users: tuple[str, ...], path: str, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """{user: password} for every user, the environment first, then the file; one error naming every
    user without a usable password."""
    from_file = read_password_file(path)
    found, problems = {}, []
    for user in users:
        password = environ.get(env_name(user))
        if password is None:
            password = from_file.get(user)
        if not password:
            problems.append(f"no password for registry user {user!r}: set {env_name(user)} in the environment "
                            f"or add a `{user}:PASSWORD` line to {path} (mode 0600, kept out of git)")
        elif "\n" in password or len(password.encode()) > BCRYPT_MAX_BYTES:
            problems.append(f"the password of registry user {user!r} must be one line of at most "
                            f"{BCRYPT_MAX_BYTES} bytes (bcrypt reads no more)")
        else:
            found[user] = password
    if problems:
        raise CredentialError("; ".join(problems))
    return found


def load_secret(env: str, path: str, variable: str, what: str, environ: Mapping[str, str] = os.environ) -> str:
    """A one-line secret: the environment variable `env`, else the first line of the controller file
    `path` (the inventory's `variable`), refused if others may read it. `what` names it in errors."""
    secret = environ.get(env)
    if secret is None:
        text = _private_text(path, variable)
        secret = text.splitlines()[0] if text else ""
    if not secret:
        raise CredentialError(f"no {what}: set {env} in the environment or put it on the first line of {path} "
                              "(mode 0600, kept out of git)")
    if "\n" in secret:
        raise CredentialError(f"{env} must be one line")
    return secret


def load_proxy_password(user: str, path: str, environ: Mapping[str, str] = os.environ) -> str:
    """The pull-through cache's upstream password for `user`: REGDEPLOY_PROXY_PASSWORD, else the first
    line of `path` (registry_proxy_password_file)."""
    return load_secret(PROXY_ENV, path, "registry_proxy_password_file",
                       f"password for the upstream account {user!r} (registry_proxy_username)", environ)


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()


@functools.lru_cache(maxsize=256)
def verify(password: str, hashed: str) -> bool:
    """Whether `hashed` is a bcrypt hash of `password` (anything unreadable: no)."""
    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except ValueError:
        return False


def parse_htpasswd(text: str) -> dict[str, str]:
    entries = {}
    for line in text.splitlines():
        user, colon, hashed = line.strip().partition(":")
        if colon:
            entries[user] = hashed
    return entries


def plan_htpasswd(current: str | None, passwords: Mapping[str, str]) -> str | None:
    """The htpasswd file as it must be, or None when `current` already holds exactly these users,
    each with a hash of their password. A user whose hash still verifies keeps it: changing one
    password rewrites one line."""
    entries = parse_htpasswd(current or "")
    if current is not None and set(entries) == set(passwords) and \
            all(verify(password, entries[user]) for user, password in passwords.items()):
        return None
    kept = {user: entries[user] for user, password in passwords.items()
            if user in entries and verify(password, entries[user])}
    return "".join(f"{user}:{kept.get(user) or hash_password(password)}\n" for user, password in passwords.items())


def rotated_entries(current: str | None, passwords: Mapping[str, str]) -> str:
    """The htpasswd lines of `current` whose user stays but whose password changes: the hashes a
    rotation keeps accepting until every host has logged in with the new password (empty: none)."""
    entries = parse_htpasswd(current or "")
    return "".join(f"{user}:{entries[user]}\n" for user, password in passwords.items()
                   if user in entries and not verify(password, entries[user]))


@functools.lru_cache(maxsize=64)
def stamp(user: str, password: str) -> str:
    """What regdeploy writes beside a credential it put on a host (a `docker login`, the server's
    API credentials): the user and a bcrypt hash, so the next run can tell by verifying whether the
    credential is current without the password (or anything easier to reverse) leaving the host.

    One hash per run (cached): every host a run logs in carries the same stamp, so the next run
    verifies it once (verify() is cached too), not once per host."""
    return f"{user} {hash_password(password)}"


def stamp_matches(found: str | None, user: str, password: str) -> bool:
    """`found`: "USER HASH MODE" as the DockerHostState fact reports a stamp (MODE: the credential
    file's, which must be 600)."""
    parts = (found or "").split()
    return len(parts) == 3 and parts[0] == user and parts[2] == "600" and verify(password, parts[1])


def curl_config(user: str, password: str) -> str:
    """A curl config file (`curl -K`) that sends these credentials; curl's quoting rules."""
    quoted = f"{user}:{password}".replace("\\", "\\\\").replace('"', '\\"')
    return f'user = "{quoted}"\n'
