"""The S3 side of templates/parts/storage.sh.j2 (gc and prune on replicas), against a stand-in S3: a
`curl` that serves a directory laid out as distribution writes a bucket (ListObjectsV2 two keys a
page, so every listing pages; GET; DELETE) and checks the query is sorted and encoded as AWS
signature v4 needs. The listing must say what the filesystem listing says of the same tree; the
prune's deletions take exactly their tags and manifests; a store that stops answering mid-listing
fails the listing and keeps every manifest. No network, no host."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from regdeploy import retention
from regdeploy.rendering import render
from tests.unit.test_retention import NOW, assert_lists_stored, digest, write_storage

STAND_IN_S3 = r'''
import datetime, os, sys, urllib.parse
root, args = sys.argv[1], sys.argv[2:]
method, out, url, i = "GET", None, None, 0
while i < len(args):
    if args[i] in ("-K", "--aws-sigv4", "-H"): i += 2; continue
    if args[i] == "-X": method = args[i + 1]; i += 2; continue
    if args[i] == "-o": out = args[i + 1]; i += 2; continue
    if args[i].startswith("http"): url = args[i]
    i += 1
with open(os.path.join(root, "..", "calls"), "a") as calls:
    calls.write(f"{method} {url}\n")
parts = urllib.parse.urlsplit(url)
bucket, _, key = parts.path.lstrip("/").partition("/")
assert bucket == "bucket", url
if parts.query:
    names = [p.split("=")[0] for p in parts.query.split("&")]
    assert names == sorted(names) and "/" not in parts.query, url  # canonical: sorted, encoded
    query = urllib.parse.parse_qs(parts.query)
    prefix, token = query["prefix"][0], query.get("continuation-token", [""])[0]
    if token and os.path.exists(os.path.join(root, "..", "fail-next-page")):
        sys.exit(22)
    keys = sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)
    keys = [k for k in keys if k.startswith(prefix) and k > token]
    page = keys[:2]
    body = "".join(
        f"<Contents><Key>{k}</Key><LastModified>"
        f"{datetime.datetime.fromtimestamp(os.path.getmtime(os.path.join(root, k)), datetime.timezone.utc):%Y-%m-%dT%H:%M:%S.000Z}"
        f"</LastModified><ETag>x</ETag><Size>{os.path.getsize(os.path.join(root, k))}</Size></Contents>" for k in page)
    more = len(keys) > 2
    sys.stdout.write('<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><Name>bucket</Name>'
                     f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>{body}"
                     + (f"<NextContinuationToken>{page[-1]}</NextContinuationToken>" if more else "")
                     + "</ListBucketResult>")
    sys.exit(0)
path = os.path.join(root, key)
if method == "DELETE":
    if os.path.exists(path): os.remove(path)
    sys.exit(0)
if not os.path.isfile(path):
    sys.stderr.write(f"404 {key}\n"); sys.exit(22)
with open(path, "rb") as blob:
    sys.stdout.buffer.write(blob.read())
'''


def run(tmp_path: Path, commands: str) -> subprocess.CompletedProcess:
    bucket = tmp_path / "bucket"
    (tmp_path / "s3.py").write_text(STAND_IN_S3)
    script = (f'bucket=http://s3.test/bucket\ncred=/dev/null\nsay() {{ echo "say: $*" >&2; }}\n'
              f'curl() {{ {sys.executable} {tmp_path / "s3.py"} {bucket} "$@"; }}\n'
              + render("storage.sh.j2", s3_store=True, s3_region="us-east-1") + commands)
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)


@pytest.fixture
def bucket(tmp_path) -> Path:
    write_storage(tmp_path / "bucket")
    return tmp_path / "bucket"


def test_the_bucket_is_listed_as_the_disk_is(tmp_path, bucket):
    result = run(tmp_path, "list_storage\n")
    assert result.returncode == 0, result.stderr
    assert_lists_stored(retention.parse_storage(result.stdout.splitlines()))
    # Listed page by page (two keys each), each query sorted and encoded (the stand-in checks it).
    assert "continuation-token=" in (tmp_path / "calls").read_text()


def test_indexes_and_bytes(tmp_path, bucket):
    result = run(tmp_path, 'echo "indexes $(count_indexes) bytes $(stored_bytes)"\n')
    size = sum(p.stat().st_size for p in bucket.rglob("*") if p.is_file())
    assert result.stdout.split() == ["indexes", "1", "bytes", str(size)], result.stderr


def test_the_prunes_deletions_take_exactly_their_tags_and_manifests(tmp_path, bucket):
    """`team/* keep=1 protect=multi`: v1 goes (latest is newer, on the same image: its manifest
    stays); nothing else."""
    listed = run(tmp_path, "list_storage\n").stdout.splitlines()
    storage = retention.parse_storage(listed)
    found = retention.plan(retention.parse_rules(["team/* keep=1 protect=multi"]), storage, NOW)
    given = retention.script_input(found, storage)
    assert given["tags"] == [f"team/app v1 {digest(1)}"] and given["manifests"] == []
    work = tmp_path / "work"
    (work / "prune").mkdir(parents=True)
    for name, lines in given.items():
        (work / "prune" / name).write_text("".join(f"{line}\n" for line in lines))
    result = run(tmp_path, f"work={work}\n" + render("prune-tags.sh.j2") + 'echo "$pruned_tags $pruned_manifests $skipped"\n')
    assert result.stdout.split() == ["1", "0", "0"], result.stderr
    tags = bucket / "docker/registry/v2/repositories/team/app/_manifests/tags"
    assert sorted(p.name for p in tags.iterdir() if any(p.rglob("link"))) == ["latest", "multi"]
    assert len(list(bucket.rglob("revisions/sha256/*/link"))) == 2


def test_a_manifest_no_tag_points_at_goes_and_one_a_tag_points_at_stays(tmp_path, bucket):
    work = tmp_path / "work"
    (work / "prune").mkdir(parents=True)
    (work / "prune" / "repositories").write_text("team/app\n")
    snapshot = "".join(f"team/app {tag} {digest(number)}\n" for tag, number, _ in (("v1", 1, 0), ("latest", 1, 0),
                                                                                   ("multi", 2, 0)))
    (work / "prune" / "snapshot").write_text(snapshot)
    (work / "prune" / "tags").write_text(f"team/app multi {digest(2)}\n")
    (work / "prune" / "manifests").write_text(f"team/app {digest(2)}\nteam/app {digest(1)}\n")
    result = run(tmp_path, f"work={work}\n" + render("prune-tags.sh.j2") + 'echo "$pruned_tags $pruned_manifests"\n')
    assert result.stdout.split() == ["1", "1"], result.stderr
    assert f"kept team/app@{digest(1)}: a tag points at it" in result.stderr
    assert [p.parent.name for p in bucket.rglob("revisions/sha256/*/link")] == [f"{1:064x}"]


def test_a_store_that_stops_answering_fails_the_listing_and_keeps_every_manifest(tmp_path, bucket):
    (tmp_path / "fail-next-page").touch()
    assert run(tmp_path, "list_storage\n").returncode != 0
    assert run(tmp_path, "count_indexes\n").returncode != 0
    # A manifest whose repository's tags cannot be listed counts as pointed at: it stays.
    result = run(tmp_path, f'tag_points_at team/app {digest(2)} && echo kept\n')
    assert result.stdout.strip() == "kept", result.stderr
