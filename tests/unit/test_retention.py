"""Retention rules and what prune deletes (regdeploy.retention): no host."""

import json

import pytest

from regdeploy import retention
from regdeploy.retention import RetentionError, Storage, Tag, parse_rule, parse_rules, plan

NOW = 1_800_000_000
DAY = 86400


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def image(config: int, *layers: tuple[int, int]) -> dict:
    return {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"digest": digest(config), "size": 100},
            "layers": [{"digest": digest(d), "size": size} for d, size in layers]}


def index(*platforms: int) -> dict:
    return {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"digest": digest(p), "platform": {"os": "linux"}} for p in platforms]}


@pytest.mark.parametrize("text,expected", [
    ("* keep=3 protect=latest", retention.Rule("*", keep=3, protect=("latest",))),
    ("ci/* within=14d", retention.Rule("ci/*", within=14 * DAY)),
    ("team-a/app keep=0 protect=v*,release-?", retention.Rule("team-a/app", keep=0, protect=("v*", "release-?"))),
    ("* keep=10 within=12h", retention.Rule("*", keep=10, within=12 * 3600)),
    ("ci/* keep=2 pulled=30d", retention.Rule("ci/*", keep=2, pulled=30 * DAY)),
])
def test_rules_parse(text, expected):
    assert parse_rule(text) == expected


@pytest.mark.parametrize("text,message", [
    ("* protect=latest", "neither keep=N nor within=DURATION"),
    ("* keep=-1", "'keep=-1' is not keep=N"),
    ("* within=3y", "'within=3y' is not keep=N"),
    ("* keep=1 keep=2", "gives keep twice"),
    ("* keep=1 pulled=7", "'pulled=7' is not"),
    ("* keep=1 pulled=1d pulled=2d", "gives pulled twice"),
    ("* pulled=30d", "neither keep=N nor within=DURATION"),
    ("* keep=1 protect=a/b", "'protect=a/b' is not"),
    ("Team/* keep=1", "upper-case"),
    ("app:1 keep=1", "names a tag or digest"),
    ("* keep=1 sort=name", "'sort=name' is not"),
])
def test_bad_rules_are_refused_naming_the_rule(text, message):
    with pytest.raises(RetentionError, match=message.replace("(", r"\(").replace("*", r"\*")):
        parse_rule(text)


def test_every_bad_rule_is_named_at_once():
    with pytest.raises(RetentionError) as caught:
        parse_rules(["* keep=x", "a keep=1", "b within=1y"])
    assert "'* keep=x'" in str(caught.value) and "'b within=1y'" in str(caught.value)
    assert "'a keep=1'" not in str(caught.value)


def six_tags(repository="ci/app") -> tuple[list[Tag], dict]:
    """Six tags pushed a day apart (v1 oldest), each its own image with one unique layer; `latest`
    points at the oldest."""
    tags = [Tag(repository, f"v{n}", digest(n), NOW - (7 - n) * DAY) for n in range(1, 7)]
    tags.append(Tag(repository, "latest", digest(1), NOW - 7 * DAY))
    manifests = {digest(n): image(100 + n, (200 + n, 1000 * n), (999, 5000)) for n in range(1, 7)}
    return tags, manifests


def storage(tags, manifests, revisions=None) -> Storage:
    if revisions is None:
        revisions = {}
        for t in tags:
            revisions.setdefault(t.repository, set()).add(t.digest)
    return Storage(tuple(tags), {r: tuple(sorted(d)) for r, d in revisions.items()}, manifests,
                   {d: 500 for d in manifests})


def test_keep_the_last_three_and_latest():
    """The issue's case: 6 pushed tags and `latest`, keep=3, latest protected. latest shares v1's digest:
    v1's tag goes, its manifest stays (latest still points at it)."""
    tags, manifests = six_tags()
    found = plan(parse_rules(["* keep=3 protect=latest"]), storage(tags, manifests), NOW)
    assert [t.tag for t in found.delete_tags] == ["v1", "v2", "v3"]
    assert sorted(t.tag for t in found.kept_tags) == ["latest", "v4", "v5", "v6"]
    assert found.delete_manifests == (("ci/app", digest(2)), ("ci/app", digest(3)))
    # Their unique layers, configs and manifests; not the layer every image shares, not v1's.
    assert found.freed_bytes == (2000 + 100 + 500) + (3000 + 100 + 500)


def test_within_keeps_what_was_pushed_recently_and_keep_counts_by_push_time():
    tags, manifests = six_tags()
    found = plan(parse_rules(["* keep=1 within=3d"]), storage(tags, manifests), NOW)
    # pushed 1 and 2 days ago (v6, v5), and the newest (v6)
    assert sorted(t.tag for t in found.kept_tags) == ["v5", "v6"]


def test_a_repository_no_rule_matches_is_never_touched():
    tags, manifests = six_tags("other/app")
    found = plan(parse_rules(["ci/* keep=1"]), storage(tags, manifests), NOW)
    assert found.delete_tags == () and found.delete_manifests == () and found.untouched == ("other/app",)
    assert found.freed_bytes == 0


def test_the_first_matching_rule_decides():
    tags, manifests = six_tags()
    found = plan(parse_rules(["ci/app keep=6", "* keep=1"]), storage(tags, manifests), NOW)
    assert [t.tag for t in found.delete_tags] == ["latest"]  # the 7th newest
    assert found.delete_manifests == ()  # v1 still points at it


def test_an_index_kept_keeps_its_platforms_and_one_deleted_takes_only_what_nothing_else_needs():
    tags = [Tag("multi/app", "new", digest(50), NOW - DAY), Tag("multi/app", "old", digest(60), NOW - 9 * DAY)]
    manifests = {digest(50): index(51, 52), digest(51): image(151, (251, 10)), digest(52): image(152, (252, 10)),
                 digest(60): index(61, 52), digest(61): image(161, (261, 10))}
    revisions = {"multi/app": set(manifests)}
    found = plan(parse_rules(["* keep=1"]), storage(tags, manifests, revisions), NOW)
    assert [t.tag for t in found.delete_tags] == ["old"]
    # old's index and its own platform go; the platform `new` shares (52) stays, as do 51 and 50.
    assert found.delete_manifests == (("multi/app", digest(60)), ("multi/app", digest(61)))


def test_a_kept_manifest_that_could_not_be_read_keeps_every_manifest_of_its_repository():
    """It might be an index whose platforms the deleted tags' manifests are: tags go, manifests stay."""
    tags = [Tag("multi/app", "new", digest(50), NOW - DAY), Tag("multi/app", "old", digest(51), NOW - 9 * DAY)]
    manifests = {digest(51): image(151, (251, 10))}  # 50 (new's) unreadable
    found = plan(parse_rules(["* keep=1"]), storage(tags, manifests, {"multi/app": {digest(50), digest(51)}}), NOW)
    assert [t.tag for t in found.delete_tags] == ["old"] and found.delete_manifests == ()


def test_untagged_manifests_the_rules_did_not_take_are_left_to_gc():
    tags, manifests = six_tags()
    manifests[digest(77)] = image(177, (277, 10))
    revisions = {"ci/app": {t.digest for t in tags} | {digest(77)}}
    found = plan(parse_rules(["* keep=10"]), storage(tags, manifests, revisions), NOW)
    assert found.delete_tags == () and found.delete_manifests == ()


def test_a_blob_another_repository_uses_is_not_counted_as_freed():
    tags, manifests = six_tags()
    other = Tag("other/app", "1", digest(9), NOW)
    manifests[digest(9)] = image(109, (202, 2000))  # v2's unique layer, used here too
    found = plan(parse_rules(["ci/* keep=3 protect=latest"]), storage(tags + [other], manifests), NOW)
    assert found.freed_bytes == (100 + 500) + (3000 + 100 + 500)


def test_the_storage_listing_parses_and_feeds_the_script():
    lines = [f"tag ci/app v1 {digest(1)} {NOW - DAY}.123", f"tag ci/app v2 {digest(2)} {NOW}.5",
             f"revision ci/app {digest(1)}", f"revision ci/app {digest(2)}",
             f"manifest {digest(1)} 528 {json.dumps(image(101, (201, 10)))}",
             f"manifest {digest(2)} 528 {json.dumps(image(102, (202, 10)))}"]
    found = retention.parse_storage(lines)
    assert found.tags[0] == Tag("ci/app", "v1", digest(1), NOW - DAY)
    assert found.revisions == {"ci/app": (digest(1), digest(2))} and found.sizes[digest(1)] == 528
    decided = plan(parse_rules(["* keep=1"]), found, NOW)
    given = retention.script_input(decided, found)
    assert given == {"repositories": ["ci/app"],
                     "snapshot": [f"ci/app v1 {digest(1)}", f"ci/app v2 {digest(2)}"],
                     "tags": [f"ci/app v1 {digest(1)}"], "manifests": [f"ci/app {digest(1)}"]}


def test_a_name_distribution_would_not_write_stops_the_prune():
    bad = Storage((Tag("ci/app", "v1;rm", digest(1), NOW - 9 * DAY),), {"ci/app": (digest(1),)}, {})
    decided = plan(parse_rules(["* keep=0"]), bad, NOW)
    with pytest.raises(RetentionError, match="nothing was deleted"):
        retention.script_input(decided, bad)


# A storage laid out as distribution writes it: repository team/app, tags v1 and latest on an image,
# multi on an index; the tags' links pushed at different times.
STORED = {1: image(101, (201, 10)), 2: index(3, 4)}
STORED_TAGS = (("v1", 1, NOW - DAY), ("latest", 1, NOW), ("multi", 2, NOW - 2 * DAY))


def write_storage(root) -> None:
    """STORED and STORED_TAGS under `root` (a data directory, or a stand-in bucket's)."""
    import os
    v2 = root / "docker" / "registry" / "v2"
    for number, manifest in STORED.items():
        text = json.dumps(manifest, indent=2)
        blob = v2 / "blobs" / "sha256" / f"{number:064x}"[:2] / f"{number:064x}" / "data"
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_text(text)
        revision = v2 / "repositories" / "team" / "app" / "_manifests" / "revisions" / "sha256" / f"{number:064x}" / "link"
        revision.parent.mkdir(parents=True)
        revision.write_text(digest(number))
    for tag, number, pushed in STORED_TAGS:
        link = v2 / "repositories" / "team" / "app" / "_manifests" / "tags" / tag / "current" / "link"
        link.parent.mkdir(parents=True)
        link.write_text(digest(number))  # no newline, as distribution writes it
        os.utime(link, (pushed, pushed))


def assert_lists_stored(found: Storage) -> None:
    assert set(found.tags) == {Tag("team/app", tag, digest(number), pushed) for tag, number, pushed in STORED_TAGS}
    assert sorted(found.revisions["team/app"]) == [digest(1), digest(2)]
    assert found.manifests == {digest(1): STORED[1], digest(2): STORED[2]}


def test_the_storage_script_lists_tags_revisions_and_manifests_of_a_filesystem_storage(tmp_path):
    """registry-storage.sh against a storage laid out as distribution writes it: each tag's digest and
    its link's mtime, each revision, each manifest once with its size and JSON on one line."""
    import subprocess
    from regdeploy import registry_files
    from regdeploy.settings import validate_hosts
    write_storage(tmp_path)
    settings = validate_hosts([("reg1", {"registry_data_dir": str(tmp_path)}, {"registry_servers"})])["reg1"]
    script = registry_files.server_script(settings, "registry-storage.sh.j2", "test")
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
    found = retention.parse_storage(result.stdout.splitlines())
    assert_lists_stored(found)
    assert found.sizes[digest(1)] == len(json.dumps(STORED[1], indent=2))


def pulls_of(*entries, logs=None) -> dict:
    """Storage fields for pulls: (repository, reference, seconds ago) each; every log from 30 days ago."""
    return {"pulls": tuple((r, ref, NOW - ago) for r, ref, ago in entries),
            "logs": {"reg1": NOW - 30 * DAY, "reg2": NOW - 30 * DAY} if logs is None else logs}


@pytest.mark.parametrize("pulls, stays", [
    # keep=1: v6 stays anyway; v2 pulled by tag 2 days ago, v3's manifest by digest yesterday.
    (pulls_of(("ci/app", "v2", 2 * DAY), ("ci/app", digest(3), DAY)), {"v6", "v2", "v3"}),
    # A pull before the window, or of another repository, protects nothing.
    (pulls_of(("ci/app", "v2", 8 * DAY), ("other/app", "v3", DAY)), {"v6"}),
    # latest points at v1's manifest: pulling latest keeps latest, pulling v1's digest keeps both.
    (pulls_of(("ci/app", "latest", DAY)), {"v6", "latest"}),
    (pulls_of(("ci/app", digest(1), DAY)), {"v6", "latest", "v1"}),
    # A log that begins inside the window (a registry recreated 3 days ago): pulls before it are not
    # known, so every tag stays. No log, or one that could not be read: the same.
    (pulls_of(logs={"reg1": NOW - 30 * DAY, "reg2": NOW - 3 * DAY}), {"v1", "v2", "v3", "v4", "v5", "v6", "latest"}),
    (pulls_of(logs={}), {"v1", "v2", "v3", "v4", "v5", "v6", "latest"}),
    (pulls_of(logs={"reg1": None}), {"v1", "v2", "v3", "v4", "v5", "v6", "latest"}),
])
def test_a_tag_pulled_within_the_window_stays(pulls, stays):
    tags, manifests = six_tags()
    held = Storage(**{**storage(tags, manifests).__dict__, **pulls})
    found = plan(parse_rules(["ci/* keep=1 pulled=7d"]), held, NOW)
    assert {t.tag for t in found.kept_tags} == stays
    assert bool(found.pulls_unknown) == (stays == {t.tag for t in tags})
    # Without pulled=, the same pulls change nothing.
    assert {t.tag for t in plan(parse_rules(["ci/* keep=1"]), held, NOW).kept_tags} == {"v6"}


def test_the_access_log_lines_parse():
    found = retention.parse_storage([
        "log registry1 2026-12-01T10:00:00.123456789Z", "log registry2 unknown",
        "pulled ci/app v4 2026-12-06T06:20:00.5Z", f"pulled ci/app {digest(3)} 2026-12-06T06:21:00.000000001Z",
        "pulled ci/app v5 not-a-time"])
    assert found.logs == {"registry1": retention.log_time("2026-12-01T10:00:00Z"), "registry2": None}
    assert found.pulls == (("ci/app", "v4", 1796538000), ("ci/app", digest(3), 1796538060))
    assert retention.pulls_window(parse_rules(["a keep=1 pulled=2d", "b keep=1 pulled=1w", "c keep=1"])) == 7 * DAY
    assert retention.pulls_window(parse_rules(["c keep=1"])) == 0


def test_the_rules_travel_to_the_server_with_their_window():
    rules = parse_rules(["ci/* keep=2 pulled=30d", "* keep=5"])
    assert retention.rules_from_json(retention.rules_json(rules)) == rules
