"""The registry's lifecycle on a lab of its own (regdeploy-life): moving a server from registry:2 to
registry:3 (the lab's stand-in with distribution v3's interface) keeps every image, and the v3
registry serves regdeploy's config.yml, not the one built into the image.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from lab import config as lab_config
from regdeploy import retention
from regdeploy.registry_api import RegistryClient, base_url
from regdeploy.registry_plan import CONFIG_TARGET
from regdeploy.settings import archive_sha256
from tests.access import own_lab, regdeploy_json, run_deploy
from tests.pulls import PullLoops, assert_pulled_throughout, ended

LIFE_LAB = lab_config.default_lab("regdeploy-life")
MANIFEST_TYPES = ", ".join(["application/vnd.docker.distribution.manifest.v2+json",
                            "application/vnd.oci.image.manifest.v1+json"])


@pytest.fixture(scope="module")
def life(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("life")
    with own_lab(request, LIFE_LAB, 2, work) as access:
        yield access, work


def converge(inventory, env: dict[str, str] | None = None) -> set[tuple[str, str]]:
    first = run_deploy(inventory, env=env)
    assert first.returncode == 0, first.stderr[-4000:]
    again = run_deploy(inventory, env=env)
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.changed_hosts() == set(), again.changes()
    return first.changes()


def delete_status(registry: str, repository: str, digest: str) -> int:
    return requests.delete(f"{base_url(registry)}/v2/{repository}/manifests/{digest}", timeout=10).status_code


def test_registry_2_to_3_keeps_every_image_and_serves_regdeploys_config(life, test_image_archive):
    access, work = life
    converge(access.inventory)
    access.load_image_archive("client1", test_image_archive)
    access.ssh("client1", "docker rm -f mk >/dev/null 2>&1; docker run --name mk busybox sh -c 'echo 2 > /two' && "
                          "docker commit mk registry:5000/life/two:2 >/dev/null && docker rm mk >/dev/null && "
                          "docker push -q registry:5000/life/two:2 && docker tag busybox registry:5000/life/one:1 && "
                          "docker push -q registry:5000/life/one:1 && docker tag busybox registry:5000/life/scratch:x "
                          "&& docker push -q registry:5000/life/scratch:x")
    registry = RegistryClient(base_url(access.fleet.registry_api_address))
    before = registry.manifests()
    assert {("life/one", "1"), ("life/two", "2")} <= set(before) and all(before.values())

    v3 = access.inventory_with(work / "inventory-v3.py", registry_image=lab_config.REGISTRY3_IMAGE,
                               registry_image_archive=str(LIFE_LAB.registry3_archive),
                               registry_image_archive_sha256=archive_sha256(str(LIFE_LAB.registry3_archive)))
    changed = converge(v3)
    assert [name for name, host in changed if "Recreate the registry container" in name and host == "registry"], changed

    inspected = json.loads(access.ssh("registry", "docker inspect registry"))[0]
    assert inspected["Config"]["Image"] == lab_config.REGISTRY3_IMAGE
    assert inspected["Config"]["Labels"].get(f"{lab_config.LAB_LABEL}.stand-in-for") == lab_config.REGISTRY3_IMAGE
    # The image's own default would be /etc/distribution/config.yml; regdeploy names its config.
    assert inspected["Config"]["Cmd"] == [CONFIG_TARGET]
    assert registry.manifests() == before
    access.ssh("client1", "docker image rm registry:5000/life/two:2 && docker pull -q registry:5000/life/two:2 && "
                          "docker run --rm registry:5000/life/two:2 cat /two")

    # Which config is in effect: the v3 image's built-in one enables deletes, regdeploy's
    # (registry_allow_delete=false) does not. First, that this check can tell them apart: the same
    # image run as is, on the server's loopback, accepts a DELETE.
    access.ssh("registry", f"docker rm -f builtin >/dev/null 2>&1; docker run -d --name builtin -p 127.0.0.1:5099:5000 "
                           f"{lab_config.REGISTRY3_IMAGE} >/dev/null && docker tag {lab_config.REGISTRY3_IMAGE} "
                           "127.0.0.1:5099/probe:1 && for i in $(seq 50); do docker push -q 127.0.0.1:5099/probe:1 "
                           ">/dev/null 2>&1 && break; sleep 0.2; done")
    try:
        digest = access.ssh("registry", "curl -fsS -o /dev/null -w '%header{docker-content-digest}' "
                                        f"-H 'Accept: {MANIFEST_TYPES}' http://127.0.0.1:5099/v2/probe/manifests/1")
        assert access.ssh("registry", "curl -s -o /dev/null -w '%{http_code}' -X DELETE "
                                      f"http://127.0.0.1:5099/v2/probe/manifests/{digest}") == "202"
    finally:
        access.ssh("registry", "docker rm -f builtin >/dev/null; docker image rm 127.0.0.1:5099/probe:1 >/dev/null",
                   check=False)
    scratch = before[("life/scratch", "x")]
    assert delete_status(access.fleet.registry_api_address, "life/scratch", scratch) == 405
    assert registry.manifests() == before


def test_metrics_are_published_only_when_asked(life):
    access, work = life
    address = access.fleet.server.address
    converge(access.inventory)  # back on registry:2, as the lab's inventory says
    # By default the debug endpoint is on the server's loopback only (the verify suite checks it
    # there): nothing answers from the network.
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{address}:5001/metrics", timeout=5)
    published = access.inventory_with(work / "inventory-metrics.py", registry_metrics_port=5001)
    changed = converge(published)
    assert [name for name, host in changed if "Recreate the registry container" in name and host == "registry"], changed
    assert requests.get(f"http://{address}:5001/debug/health", timeout=5).status_code == 200
    metrics = requests.get(f"http://{address}:5001/metrics", timeout=5)
    assert metrics.status_code == 200 and "# TYPE registry_" in metrics.text
    # Back to loopback only.
    converge(access.inventory)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{address}:5001/metrics", timeout=5)


LIST_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
def storage_has_blob(access, digest: str) -> bool:
    hexdigest = digest.split(":")[1]
    path = f"/var/lib/registry/docker/registry/v2/blobs/sha256/{hexdigest[:2]}/{hexdigest}"
    return access.ssh("registry", f"test -d {path} && echo yes || echo no") == "yes"


def layer_digests(registry: str, repository: str, digest: str) -> list[str]:
    manifest = requests.get(f"{base_url(registry)}/v2/{repository}/manifests/{digest}",
                            headers={"Accept": MANIFEST_TYPE}, timeout=10).json()
    return [layer["digest"] for layer in manifest["layers"]]


def test_gc_frees_an_untagged_image_keeps_every_tag_and_pulls_go_on(life):
    access, work = life
    registry_address = access.fleet.registry_api_address
    registry = RegistryClient(base_url(registry_address))
    # An image whose only tag then moves to another image: its manifest is untagged, its own layer
    # is referenced by nothing tagged.
    access.ssh("client1", "docker rm -f mk >/dev/null 2>&1; docker run --name mk busybox sh -c "
                          "'head -c 3000000 /dev/urandom > /junk' && docker commit mk registry:5000/life/junk:x "
                          ">/dev/null && docker rm mk >/dev/null && docker push -q registry:5000/life/junk:x")
    junk = registry.manifest_digest("life/junk", "x")
    junk_layer = layer_digests(registry_address, "life/junk", junk)[-1]
    access.ssh("client1", "docker tag busybox registry:5000/life/junk:x && docker push -q registry:5000/life/junk:x")
    kept = registry.manifests()
    assert storage_has_blob(access, junk_layer)

    # The dry run lists what the collection below frees, and changes nothing: not a file of the
    # storage, not the registry's config, no restart.
    untouched = ("find /var/lib/registry /etc/regdeploy -printf '%p %s %T@\\n' | sort; "
                 "docker inspect -f '{{.State.StartedAt}}' registry")
    storage_before = access.ssh("registry", untouched)
    dry = regdeploy_json(access.inventory, "gc", "--dry-run")
    assert access.ssh("registry", untouched) == storage_before
    assert dry["dry_run"] is True and junk in dry["manifests"], dry
    assert junk_layer in {blob["digest"] for blob in dry["blobs"]} and dry["bytes"] >= 3_000_000, dry
    assert storage_has_blob(access, junk_layer) and registry.manifests() == kept

    with PullLoops(access, "registry:5000/life/one:1") as pulls:
        pulls.settle()
        began = time.time()
        report = regdeploy_json(access.inventory, "gc")
        ended_at = pulls.settle()
    outcomes = pulls.outcomes()
    assert report["delete_untagged"] is True and report["indexes"] == 0
    assert report["freed_bytes"] >= 3_000_000, report
    # What the dry run said would go is what went.
    assert all(not storage_has_blob(access, blob["digest"]) for blob in dry["blobs"])
    assert not storage_has_blob(access, junk_layer)
    assert registry.manifests() == kept
    for repository, tag in kept:
        access.ssh("client1", f"docker pull -q registry:5000/{repository}:{tag} >/dev/null")
    assert_pulls_went_on(access, outcomes, (began, ended_at), report, "gc")


def assert_pulls_went_on(access, outcomes: dict[str, list[str]], command: tuple[float, float], report: dict,
                         what: str) -> None:
    """Every client pulled from before the command began (`command`: its start and end) until after
    it ended, and no pull failed: through the restarts into and out of read-only (new connections
    wait while the registry restarts) and the window between them. The hold on new connections is
    gone from the server's firewall afterwards."""
    assert_pulled_throughout(outcomes, *command)
    assert "regdeploy" not in access.ssh("registry", "iptables -t raw -S PREROUTING; ip6tables -t raw -S PREROUTING")
    during = [line for lines in outcomes.values() for line in lines if command[0] <= ended(line) <= command[1]]
    longest = max(b - a for lines in outcomes.values() for a, b in zip(map(ended, lines), map(ended, lines[1:])))
    print(f"{what}: read-only {report['readonly_seconds']} s; {sum(map(len, outcomes.values()))} pulls on "
          f"{len(outcomes)} clients, none failed, {len(during)} ended while `regdeploy {what}` ran; longest "
          f"gap between two pulls of a client {longest:.2f} s")


def put_index(url: str, tag: str, platforms: dict[str, str]) -> list[dict]:
    """An image index tagged `tag` over the images tagged as `platforms`' keys (each labelled with its
    architecture), PUT at `url` (a repository's /manifests); its entries."""
    children = []
    for platform, arch in platforms.items():
        response = requests.get(f"{url}/{platform}", headers={"Accept": MANIFEST_TYPE}, timeout=10)
        children.append({"mediaType": MANIFEST_TYPE, "size": len(response.content),
                         "digest": response.headers["Docker-Content-Digest"],
                         "platform": {"architecture": arch, "os": "linux"}})
    index = json.dumps({"schemaVersion": 2, "mediaType": LIST_TYPE, "manifests": children})
    put = requests.put(f"{url}/{tag}", data=index, headers={"Content-Type": LIST_TYPE}, timeout=10)
    assert put.status_code == 201, put.text
    return children


def test_gc_keeps_an_image_index_and_its_platforms(life):
    access, work = life
    registry_address = access.fleet.registry_api_address
    registry = RegistryClient(base_url(registry_address))
    url = f"{base_url(registry_address)}/v2/life/multi/manifests"
    # Two platform images, pushed by tag, an index over them, then both tags moved elsewhere: the
    # platform manifests are untagged but the index needs them (as after a multi-arch push).
    access.ssh("client1", "docker rm -f mk >/dev/null 2>&1; docker run --name mk busybox sh -c 'echo arm > /arch' "
                          "&& docker commit mk registry:5000/life/multi:b >/dev/null && docker rm mk >/dev/null && "
                          "docker tag busybox registry:5000/life/multi:a && docker push -q registry:5000/life/multi:a "
                          "&& docker push -q registry:5000/life/multi:b")
    children = put_index(url, "latest", {"a": "amd64", "b": "arm64"})
    access.ssh("client1", "docker tag registry:5000/life/two:2 registry:5000/life/multi:a && "
                          "docker tag registry:5000/life/two:2 registry:5000/life/multi:b && "
                          "docker push -q registry:5000/life/multi:a && docker push -q registry:5000/life/multi:b")
    kept = registry.manifests()

    report = regdeploy_json(access.inventory, "gc")
    # Asked to delete untagged manifests, regdeploy saw the index and did not.
    assert report["indexes"] >= 1 and report["delete_untagged"] is False, report
    assert registry.manifests() == kept
    for child in children:
        got = requests.get(f"{url}/{child['digest']}", headers={"Accept": MANIFEST_TYPE}, timeout=10)
        assert got.status_code == 200, child
        for layer in json.loads(got.content)["layers"]:
            assert storage_has_blob(access, layer["digest"])
    # Docker on client1 (amd64) pulls the index and gets its amd64 platform, pushed as tag a.
    pulled = access.ssh("client1", "docker pull -q registry:5000/life/multi:latest >/dev/null && docker image "
                                   "inspect -f '{{.Id}}' registry:5000/life/multi:latest")
    assert pulled == access.ssh("client1", "docker image inspect -f '{{.Id}}' busybox")


def test_prune_keeps_the_newest_and_protected_tags_and_what_a_kept_tag_or_index_needs(life):
    """registry_retention `prune/* keep=3 protect=latest`:
    - prune/app: latest (the oldest) and v1..v5: v1 and v2 go, and only those were in the dry run;
      the bytes freed are at least their own layers;
    - prune/shared: s1..s3, then s4 the same image as s1: s1's tag goes, its manifest stays for s4;
    - prune/multi: p1, p2, n1, n2, then an index over p1's and p2's images: p1 and p2's tags go,
      the index and both platforms stay.
    With Docker pulling prune/app:v5 in a loop meanwhile."""
    access, work = life
    address = access.fleet.registry_api_address
    registry = RegistryClient(base_url(address))
    inventory = access.inventory_with(work / "inventory-prune.py", registry_retention=["prune/* keep=3 protect=latest"])
    for tag in ("latest", "v1", "v2", "v3", "v4", "v5"):
        access.push_unique("client1", f"registry:5000/prune/app:{tag}")
    for tag in ("s1", "s2", "s3"):
        access.push_unique("client1", f"registry:5000/prune/shared:{tag}")
    access.ssh("client1", "docker tag registry:5000/prune/shared:s1 registry:5000/prune/shared:s4 && "
                          "docker push -q registry:5000/prune/shared:s4 >/dev/null")
    for tag in ("p1", "p2", "n1", "n2"):
        access.push_unique("client1", f"registry:5000/prune/multi:{tag}")
    url = f"{base_url(address)}/v2/prune/multi/manifests"
    children = put_index(url, "index", {"p1": "amd64", "p2": "arm64"})
    before = registry.manifests()
    gone_layers = [layer_digests(address, "prune/app", before[("prune/app", tag)])[-1] for tag in ("v1", "v2")]
    assert all(storage_has_blob(access, layer) for layer in gone_layers)

    untouched = ("find /var/lib/registry /etc/regdeploy -printf '%p %s %T@\\n' | sort; "
                 "docker inspect -f '{{.State.StartedAt}}' registry")
    storage_before = access.ssh("registry", untouched)
    dry = regdeploy_json(inventory, "prune", "--dry-run")
    assert access.ssh("registry", untouched) == storage_before, "the dry run changed something"
    expected = {("prune/app", "v1"), ("prune/app", "v2"), ("prune/shared", "s1"), ("prune/multi", "p1"),
                ("prune/multi", "p2")}
    assert {(d["repository"], d["tag"]) for d in dry["delete"]} == expected, dry
    assert {(d["repository"], d["digest"]) for d in dry["delete_manifests"]} == {
        ("prune/app", before[("prune/app", "v1")]), ("prune/app", before[("prune/app", "v2")])}, dry
    assert dry["freed_bytes_at_least"] >= 2 * 300_000 and "life/one" in dry["untouched"]

    with PullLoops(access, "registry:5000/prune/app:v5") as pulls:
        pulls.settle()
        began = time.time()
        report = regdeploy_json(inventory, "prune")
        ended_at = pulls.settle()
    outcomes = pulls.outcomes()
    collected = report["collected"]
    assert (collected["pruned_tags"], collected["pruned_manifests"], collected["skipped_tags"]) == (5, 2, 0), report
    after = registry.manifests()
    assert after == {key: digest for key, digest in before.items() if key not in expected}
    assert {tag for repository, tag in after if repository == "prune/app"} == {"latest", "v3", "v4", "v5"}
    assert not any(storage_has_blob(access, layer) for layer in gone_layers)
    assert collected["before_bytes"] - collected["after_bytes"] >= 2 * 300_000, collected
    # The tag that shared s1's image, and the index with both platforms, still serve.
    assert access.ssh("client1", "docker pull -q registry:5000/prune/shared:s4")
    for child in children:
        assert requests.get(f"{url}/{child['digest']}", headers={"Accept": MANIFEST_TYPE}, timeout=10).status_code == 200
    pulled = access.ssh("client1", "docker image rm registry:5000/prune/multi:p1 >/dev/null 2>&1; "
                                   "docker pull -q registry:5000/prune/multi:index >/dev/null && "
                                   "docker image inspect -f '{{.Id}}' registry:5000/prune/multi:index")
    assert pulled.startswith("sha256:")
    assert_pulls_went_on(access, outcomes, (began, ended_at), collected, "prune")
    # Nothing left to delete: a second prune says so and changes nothing.
    again = regdeploy_json(inventory, "prune")
    assert again["tags_deleted"] == 0 and "collected" not in again


def test_prune_keeps_what_was_pulled_within_the_window(life):
    """`pulled/* keep=1 pulled=1m`: of p1, p2 and p3 (the newest), pushed over a minute ago, client2 has
    just pulled p1: the dry run lists p2 alone, and the prune deletes p2 alone. With `pulled=1w` the
    registry's log (begun when the lab made it) does not reach back a week: every tag stays, and the
    report says which rule."""
    access, work = life
    for tag in ("p1", "p2", "p3"):
        access.push_unique("client1", f"registry:5000/pulled/app:{tag}")
    time.sleep(61)  # the pushes fall out of the window; then one pull, on another host
    access.ssh("client2", "docker image rm registry:5000/pulled/app:p1 >/dev/null 2>&1; "
                          "docker pull -q registry:5000/pulled/app:p1 >/dev/null")
    begin = retention.log_time(access.ssh("registry", "docker logs -t registry 2>&1 | head -n 1 | cut -d' ' -f1"))
    assert begin is not None and time.time() - begin > 60, "the registry's log must reach back over the window"
    minute = access.inventory_with(work / "inventory-pulled.py", registry_retention=["pulled/* keep=1 pulled=1m"])
    dry = regdeploy_json(minute, "prune", "--dry-run")
    assert [(d["repository"], d["tag"]) for d in dry["delete"]] == [("pulled/app", "p2")], dry
    assert dry["pulls_unknown"] == []
    week = access.inventory_with(work / "inventory-pulled-week.py", registry_retention=["pulled/* keep=1 pulled=1w"])
    unknown = regdeploy_json(week, "prune", "--dry-run")
    assert unknown["delete"] == [] and unknown["pulls_unknown"] == ["pulled/* keep=1 pulled=604800s"], unknown
    report = regdeploy_json(minute, "prune")
    assert report["collected"]["pruned_tags"] == 1, report
    registry = RegistryClient(base_url(access.fleet.registry_api_address))
    assert {tag for repository, tag in registry.manifests() if repository == "pulled/app"} == {"p1", "p3"}


def test_scheduled_gc_runs_from_its_timer_and_goes_away_when_unscheduled(life):
    access, work = life
    refused = run_deploy(access.inventory_with(work / "inventory-bad-schedule.py",
                                               registry_gc_schedule="every full moon"))
    assert refused.returncode != 0 and "is not a calendar expression systemd accepts" in refused.stderr
    assert access.ssh("registry", "ls /etc/systemd/system/regdeploy-gc.* /etc/regdeploy/gc.sh 2>/dev/null || true") == ""

    converge(access.inventory_with(work / "inventory-gc.py", registry_gc_schedule="Sun *-*-* 03:00"))
    assert access.ssh("registry", "systemctl is-enabled regdeploy-gc.timer; systemctl is-active regdeploy-gc.timer"
                      ).split() == ["enabled", "active"]
    assert "Sun" in access.ssh("registry", "systemctl show regdeploy-gc.timer -p NextElapseUSecRealtime --value")
    before = RegistryClient(base_url(access.fleet.registry_api_address)).manifests()
    # What the timer starts, started now: a local run (no SSH), with the host's deploy lock.
    access.ssh("registry", "systemctl start regdeploy-gc.service")
    journal = access.ssh("registry", "journalctl -u regdeploy-gc.service -o cat --no-pager")
    assert "read-only window" in journal and '"freed_bytes"' in journal, journal[-2000:]
    assert RegistryClient(base_url(access.fleet.registry_api_address)).manifests() == before

    # With registry_retention the timer prunes first, decided on the server by the same planner:
    # what `prune --dry-run` lists on the controller is what the timer deletes.
    pruning = access.inventory_with(work / "inventory-gc-prune.py", registry_gc_schedule="Sun *-*-* 03:00",
                                    registry_retention=["prune/* keep=2 protect=latest"])
    converge(pruning)
    dry = regdeploy_json(pruning, "prune", "--dry-run")
    expected = {(d["repository"], d["tag"]) for d in dry["delete"]}
    assert expected, dry  # the prune test's repositories hold more than 2 tags each
    access.ssh("registry", "systemctl start regdeploy-gc.service")
    journal = access.ssh("registry", "journalctl -u regdeploy-gc.service -o cat --no-pager")
    assert "retention: " in journal and f'"pruned_tags": {len(expected)}' in journal, journal[-3000:]
    assert RegistryClient(base_url(access.fleet.registry_api_address)).manifests() == {
        key: digest for key, digest in before.items() if key not in expected}
    # The rules gone, the prune's files go; the collection stays scheduled.
    converge(access.inventory_with(work / "inventory-gc.py", registry_gc_schedule="Sun *-*-* 03:00"))
    assert access.ssh("registry", "ls /usr/local/lib/regdeploy-prune /etc/regdeploy/retention.json 2>&1 | "
                                  "grep -c 'No such file'") == "2"

    changed = converge(access.inventory)  # no schedule: the timer and its files go
    assert [name for name, host in changed if "Remove the garbage collection timer" in name], changed
    assert access.ssh("registry", "ls /etc/systemd/system/regdeploy-gc.* /etc/regdeploy/gc.sh 2>/dev/null || true") == ""
    assert access.ssh("registry", "systemctl is-enabled regdeploy-gc.timer 2>&1 || true") != "enabled"


# The pull-through cache's upstream: another registry, on client1, that wants a password. Its
# accounts are behind token auth, as Docker Hub's are: distribution 2.8's proxy gives its
# credentials to a token server only (distribution issue 3153: no Basic auth to the upstream).
UPSTREAM_PASSWORD = "up-s3cret: not in any output"
TOKEN_PORT = 5091
# Docker Hub's names resolve to the host itself on the lab hosts that pull: if the cache failed,
# Docker's fallback to Docker Hub fails at once instead of leaving the lab.
NO_DOCKER_HUB = ("grep -q regdeploy-no-docker-hub /etc/hosts || echo '127.0.0.1 registry-1.docker.io auth.docker.io "
                 "index.docker.io # regdeploy-no-docker-hub' >> /etc/hosts")
# The token server: Python's standard library on client1. It grants one token, signed on the
# controller, to requests with the right Basic credentials, and logs who got it.
TOKEN_SERVER = """
import base64, http.server, json, sys
user_pass, token = open(sys.argv[1]).read().split("\\n")[:2]
expected = "Basic " + base64.b64encode(user_pass.encode()).decode()
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.headers.get("Authorization") != expected:
            print("refused", self.client_address[0], flush=True)
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="token"')
            self.end_headers()
            return
        print("granted", self.client_address[0], self.path, flush=True)
        body = json.dumps({"token": token, "access_token": token, "expires_in": 7200}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("", int(sys.argv[2])), Handler).serve_forever()
"""


def signed_upstream_token(service: str, issuer: str, repository: str) -> tuple[str, str]:
    """(certificate PEM for the registry's rootcertbundle, a JWT granting pull and push on
    `repository`) signed RS256 with a fresh key; `kid` is libtrust's key id, as distribution wants."""
    import base64
    import datetime
    import hashlib
    import time

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    kid = ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    issued = int(time.time())
    claims = {"iss": issuer, "sub": "puller", "aud": service, "iat": issued - 60, "nbf": issued - 60,
              "exp": issued + 7200, "jti": str(issued),
              "access": [{"type": "repository", "name": repository, "actions": ["pull", "push"]}]}
    signing_input = f"{part({'typ': 'JWT', 'alg': 'RS256', 'kid': kid})}.{part(claims)}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    token = f"{signing_input}.{base64.urlsafe_b64encode(signature).decode().rstrip('=')}"
    return cert.public_bytes(serialization.Encoding.PEM).decode(), token


def test_the_pull_through_cache_serves_with_its_upstream_down_and_refuses_pushes(life, test_image_archive):
    access, work = life
    server = access.fleet.server
    client1 = next(h for h in access.fleet.clients if h.name == "client1")
    assert run_deploy(access.inventory).returncode == 0  # deployed as the lab says (when run on its own)
    access.load_image_archive("client1", test_image_archive)
    access.load_image_archive("client1", LIFE_LAB.registry_archive)
    # The upstream, holding docker.io/library/cached:1 (Docker asks a mirror for Docker Hub's names only).
    cert, token = signed_upstream_token("upstream", "lab-token", "library/cached")
    access.ssh("client1", "docker rm -f upstream >/dev/null 2>&1; pkill -f '[r]egdeploy-token-server'; "
                          "mkdir -p /srv/upstream-auth && cat > /srv/upstream-auth/token.crt", stdin=cert)
    access.ssh("client1", "cat > /srv/upstream-auth/regdeploy-token-server.py", stdin=TOKEN_SERVER)
    access.ssh("client1", "umask 077 && cat > /srv/upstream-auth/grant", stdin=f"puller:{UPSTREAM_PASSWORD}\n{token}\n")
    access.ssh("client1", "nohup python3 /srv/upstream-auth/regdeploy-token-server.py /srv/upstream-auth/grant "
                          f"{TOKEN_PORT} > /srv/upstream-auth/token.log 2>&1 &")
    realm = f"http://{client1.address}:{TOKEN_PORT}/token"
    access.ssh("client1", "docker run -d --name upstream -p 5090:5000 -v /srv/upstream-auth:/auth:ro "
                          f"-e REGISTRY_AUTH=token -e REGISTRY_AUTH_TOKEN_REALM={realm} "
                          "-e REGISTRY_AUTH_TOKEN_SERVICE=upstream -e REGISTRY_AUTH_TOKEN_ISSUER=lab-token "
                          f"-e REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE=/auth/token.crt {lab_config.REGISTRY_IMAGE} >/dev/null")
    access.ssh("client1", "for i in $(seq 100); do [ \"$(curl -s -o /dev/null -w '%{http_code}' "
                          "http://127.0.0.1:5090/v2/)\" = 401 ] && exit 0; sleep 0.1; done; exit 1")
    access.ssh("client1", "docker login -u puller --password-stdin 127.0.0.1:5090 >/dev/null",
               stdin=UPSTREAM_PASSWORD)
    # One layer no host has (busybox's files and /c, exported and imported): every pull of it must
    # fetch all of it, so the cache holds all of it.
    access.ssh("client1", "docker rm -f mk >/dev/null 2>&1; docker run --name mk busybox sh -c 'echo cached > /c' && "
                          "docker export mk | docker import - 127.0.0.1:5090/library/cached:1 >/dev/null && "
                          "docker rm mk >/dev/null && "
                          "docker push -q 127.0.0.1:5090/library/cached:1 >/dev/null && docker logout 127.0.0.1:5090 "
                          ">/dev/null && docker image rm 127.0.0.1:5090/library/cached:1 >/dev/null")
    for h in ("client1", "registry"):
        access.ssh(h, NO_DOCKER_HUB)

    env = {"REGDEPLOY_PROXY_PASSWORD": UPSTREAM_PASSWORD}
    cached = access.inventory_with(work / "inventory-cache.py", registry_proxy_remote_url=f"http://{client1.address}:5090",
                                   registry_proxy_username="puller")
    first = run_deploy(cached, env=env)
    assert first.returncode == 0, first.stderr[-4000:]
    again = run_deploy(cached, env=env)
    assert again.returncode == 0 and again.changed_hosts() == set(), again.changes()
    # The password went into cache.yml (root only) and nowhere else: not the output, not the container.
    for output in (first.stderr, again.stderr):
        assert UPSTREAM_PASSWORD not in output
    assert access.ssh("registry", "stat -c '%a %U' /etc/regdeploy/cache.yml") == "600 root"
    assert UPSTREAM_PASSWORD not in access.ssh("registry", "docker inspect registry-cache")
    mirror = f"http://registry:{server.settings.registry_proxy_port}"
    for h in ("client1", "registry"):
        # Docker shows each mirror with a trailing slash.
        assert f'"{mirror}/"' in access.ssh(h, "docker info --format '{{json .RegistryConfig.Mirrors}}'"), h

    cache_api = f"http://{server.address}:{server.settings.registry_proxy_port}"
    # Pulled through the cache by Docker Hub's name, via registry-mirrors; the cache logged in upstream.
    access.ssh("client1", "docker pull -q cached:1 >/dev/null && docker run --rm cached:1 cat /c")
    assert f"granted {server.address} " in access.ssh("client1", "cat /srv/upstream-auth/token.log")
    image_id = access.ssh("client1", "docker image inspect -f '{{.Id}}' cached:1")
    assert "library/cached" in requests.get(f"{cache_api}/v2/_catalog", timeout=10).json()["repositories"]

    access.ssh("client1", "docker stop upstream >/dev/null")
    try:
        assert access.ssh("client1", "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:5090/v2/",
                          check=False) == "000"
        access.ssh("client1", "docker image rm cached:1 >/dev/null && docker pull -q cached:1 >/dev/null")
        assert access.ssh("client1", "docker image inspect -f '{{.Id}}' cached:1") == image_id
        # A second Docker host that never pulled it: served from the cache alone.
        access.ssh("registry", "docker image rm cached:1 >/dev/null 2>&1; docker pull -q cached:1 >/dev/null")
        assert access.ssh("registry", "docker image inspect -f '{{.Id}}' cached:1") == image_id
    finally:
        access.ssh("client1", "docker start upstream >/dev/null")

    # The verify suite's checks of the cache, as a user runs them against this fleet.
    verify = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/verify",
                             f"--inventory={cached}", "-k", "pull_through_cache"], cwd=Path(__file__).parents[2],
                            capture_output=True, text=True, timeout=600)
    # One check on the server, one per Docker host (the server and every client).
    expected = 1 + len(access.fleet.hosts)
    assert verify.returncode == 0 and f"{expected} passed" in verify.stdout, verify.stdout[-3000:]

    # A proxy registry is read-only: a push is refused at its first request.
    upload = requests.post(f"{cache_api}/v2/library/cached/blobs/uploads/", timeout=10)
    assert upload.status_code == 405 and "UNSUPPORTED" in upload.text, (upload.status_code, upload.text)

    # Unset: the container and cache.yml go, the data stays, no host lists the mirror any more.
    changed = converge(access.inventory)
    assert [name for name, host in changed if "Remove the pull-through cache" in name and host == "registry"], changed
    assert access.ssh("registry", "docker ps -aq --filter name=^registry-cache$; ls /etc/regdeploy/cache.yml "
                                  "2>/dev/null || true") == ""
    assert access.ssh("registry", "test -d /var/lib/registry-cache/docker/registry/v2 && echo kept") == "kept"
    for h in ("client1", "registry"):
        assert mirror not in access.ssh(h, "docker info --format '{{json .RegistryConfig.Mirrors}}'"), h
