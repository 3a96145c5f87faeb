"""The registry's lifecycle on a lab of its own (regdeploy-life): moving a server from registry:2 to
registry:3 (the lab's stand-in with distribution v3's interface) keeps every image, and the v3
registry serves regdeploy's config.yml, not the one built into the image.
"""

from __future__ import annotations

import json

import pytest
import requests

from lab import config as lab_config
from regdeploy.registry_api import RegistryClient, base_url
from regdeploy.settings import archive_sha256
from tasks.registry_server import CONFIG_TARGET
from tests.access import own_lab, run_deploy

LIFE_LAB = lab_config.default_lab("regdeploy-life")
MANIFEST_TYPES = ", ".join(["application/vnd.docker.distribution.manifest.v2+json",
                            "application/vnd.oci.image.manifest.v1+json"])


@pytest.fixture(scope="module")
def life(request, tmp_path_factory):
    work = tmp_path_factory.mktemp("life")
    with own_lab(request, LIFE_LAB, 1, work) as access:
        yield access, work


def converge(inventory) -> set[tuple[str, str]]:
    first = run_deploy(inventory)
    assert first.returncode == 0, first.stderr[-4000:]
    again = run_deploy(inventory)
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
