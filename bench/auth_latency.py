"""`python -m bench.auth_latency --inventory INV`: what a pull pays for authentication, measured on a
client: a manifest HEAD through the whole path, p50 and p95, in the fleet's current mode.

- `registry_access` (token authentication): each round asks the token service for a token (basic
  authentication, as Docker asks per pull) and then HEADs the manifest with it: `token+head`. The
  HEAD alone with a token already held (what the rest of a pull pays) is `head`.
- `registry_auth` without rules (htpasswd): the HEAD with basic authentication, which the registry
  checks with bcrypt on every request: `head`.
- TLS without authentication: the HEAD alone: `head`.

Times are curl's own (`time_total`) on the client, so ssh and the controller are not in them. The
credentials reach the client's curl in a 0600 file, removed afterwards. Run it once per mode on the
same lab and compare the medians; the figures go to docs/benchmarks.md with machine and date.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import tempfile
from pathlib import Path

from regdeploy import registry_files, security
from tests.access import Access

SCRIPT = r"""
set -eu
creds=$(umask 077 && mktemp)
header=$(umask 077 && mktemp)
cat > "$creds"
trap 'rm -f "$creds" "$header"' EXIT
ca={ca}
i=0
while [ "$i" -lt {runs} ]; do
    i=$((i + 1))
    token_time=0
    if [ -n {token_url} ]; then
        answer=$(curl -sS -K "$creds" --cacert "$ca" -w '\n%{{time_total}}' {token_url})
        token_time=$(printf '%s\n' "$answer" | tail -n 1)
        token=$(printf '%s\n' "$answer" | sed -n 's/.*"token": *"\([^"]*\)".*/\1/p')
        printf 'header = "Authorization: Bearer %s"\n' "$token" > "$header"
        head=$(curl -sS -o /dev/null -K "$header" --cacert "$ca" -I -w '%{{http_code}} %{{time_total}}' \
            -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' {manifest})
    else
        head=$(curl -sS -o /dev/null -K "$creds" --cacert "$ca" -I -w '%{{http_code}} %{{time_total}}' \
            -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' {manifest})
    fi
    echo "$token_time $head"
done
"""


def measure(inventory: Path, client: str, repository: str, tag: str, runs: int) -> dict:
    access = Access.load(inventory, Path(tempfile.mkdtemp()))
    host = next(h for h in access.fleet.hosts if h.name == client)
    settings = host.settings
    address = settings.registry_address
    token_url = ""
    if settings.registry_access:
        token_url = (f"{registry_files.token_realm(settings)}?service={registry_files.access.SERVICE}"
                     f"&scope=repository:{repository}:pull")
    creds = ""
    if settings.registry_auth:
        user, password = security.login(settings)
        escaped = f"{user}:{password}".replace("\\", "\\\\").replace('"', '\\"')
        creds = f'user = "{escaped}"\n'
    script = SCRIPT.format(ca=shlex.quote(registry_files.client_ca_path(settings)), runs=int(runs),
                           token_url=shlex.quote(token_url), manifest=shlex.quote(
                               f"https://{address}/v2/{repository}/manifests/{tag}"))
    lines = access.ssh(client, script, stdin=creds).splitlines()
    token_times, head_times, statuses = [], [], set()
    for line in lines:
        token_time, status, head_time = line.split()
        statuses.add(status)
        token_times.append(float(token_time) * 1000)
        head_times.append(float(head_time) * 1000)
    assert statuses == {"200"}, f"a HEAD answered {statuses}"

    def summary(values: list[float]) -> dict:
        ordered = sorted(values)
        return {"p50_ms": round(statistics.median(ordered), 2),
                "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 2), "runs": len(ordered)}

    mode = "token" if settings.registry_access else "htpasswd" if settings.registry_auth else "none"
    result = {"mode": mode, "client": client, "head": summary(head_times)}
    if token_url:
        result["token+head"] = summary([t + h for t, h in zip(token_times, head_times)])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--inventory", required=True, type=Path)
    parser.add_argument("--client", default="client1")
    parser.add_argument("--repository", default="team-b/app")
    parser.add_argument("--tag", default="1")
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(measure(args.inventory, args.client, args.repository, args.tag, args.runs), indent=2))


if __name__ == "__main__":
    main()
