"""What `prune` reads from a registry's access log for `pulled=` rules (templates/parts/access-log.sh.j2),
against a stand-in `docker logs`: manifest requests answered 200 are pulls, by tag or digest, GET or
HEAD; blobs, failures and regdeploy's own requests are not; a log Docker cannot read is `unknown`."""

from __future__ import annotations

import subprocess

from regdeploy import retention
from regdeploy.rendering import render

LOG = r'''2026-12-01T10:00:00.000000001Z time="2026-12-01T10:00:00Z" level=info msg="listening on [::]:5000"
2026-12-06T06:20:00.5Z 172.29.1.16 - - [06/Dec/2026:06:20:00 +0000] "GET /v2/ci/app/manifests/v4 HTTP/1.1" 200 527 "" "docker/20.10.24 go/go1.19.8"
2026-12-06T06:20:01.5Z 172.29.1.16 - - [06/Dec/2026:06:20:01 +0000] "GET /v2/ci/app/blobs/sha256:aaaa HTTP/1.1" 200 300000 "" "docker/20.10.24"
2026-12-06T06:20:02.5Z 172.29.1.17 - - [06/Dec/2026:06:20:02 +0000] "HEAD /v2/team/a/b/manifests/sha256:0123 HTTP/1.1" 200 0 "" "containerd/1.6.20"
2026-12-06T06:20:03.5Z 172.29.1.17 - - [06/Dec/2026:06:20:03 +0000] "GET /v2/ci/app/manifests/gone HTTP/1.1" 404 19 "" "docker/20.10.24"
2026-12-06T06:20:04.5Z 172.17.0.1 - - [06/Dec/2026:06:20:04 +0000] "HEAD /v2/ci/app/manifests/v1 HTTP/1.1" 200 0 "" "regdeploy"
2026-12-06T06:20:05.5Z 172.17.0.1 - - [06/Dec/2026:06:20:05 +0000] "HEAD /v2/ci/app/manifests/v2 HTTP/1.1" 200 0 "" "regdeploy/0.2.0"
'''


def list_pulls(tmp_path, log: str | None) -> list[str]:
    (tmp_path / "log").write_text(log or "")
    stand_in = (f'docker() {{ [ "$1 $2" = "logs -t" ] || exit 9; echo "$*" >> {tmp_path}/calls; '
                + (f'cat {tmp_path}/log; }}\n' if log is not None else 'echo "Error: configured logging driver does not support reading" >&2; return 1; }\n'))
    script = "name=registry\nhostname() { echo reg1; }\n" + stand_in + render("access-log.sh.j2") + "list_pulls 604800\n"
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_manifest_pulls_answered_200_and_not_regdeploys_own(tmp_path):
    lines = list_pulls(tmp_path, LOG)
    assert lines == ["log reg1 2026-12-01T10:00:00.000000001Z",
                     "pulled ci/app v4 2026-12-06T06:20:00.5Z",
                     "pulled team/a/b sha256:0123 2026-12-06T06:20:02.5Z"]
    # Read back only as far as the window (--since: seconds since the epoch, a week ago).
    assert "logs -t --since " in (tmp_path / "calls").read_text()
    found = retention.parse_storage(lines)
    assert found.logs["reg1"] is not None and len(found.pulls) == 2


def test_a_log_docker_cannot_read_is_unknown(tmp_path):
    lines = list_pulls(tmp_path, None)
    assert lines == ["log reg1 unknown"]
    assert retention.parse_storage(lines).pulled_since(0) is None
