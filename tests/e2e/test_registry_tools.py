"""The registry tools on the lab: seeding from the deploy, catalog and tags, copy, pagination."""

import json
import subprocess
import sys
from dataclasses import astuple
from pathlib import Path

import pytest
import requests

from regdeploy import registry_files
from regdeploy.facts import RegistryCatalog
from regdeploy.registry_api import MANIFEST_TYPES, RegistryClient, base_url
from tests.access import run_deploy

REGDEPLOY = str(Path(sys.executable).parent / "regdeploy")


@pytest.fixture(scope="module")
def access(lab_session):
    lab_session.ensure_deployed()
    return lab_session.access()


@pytest.fixture(scope="module")
def registry(access):
    return RegistryClient(base_url(access.fleet.registry_api_address))


def cli(lab_session, *args):
    return subprocess.run([REGDEPLOY, "--inventory", str(lab_session.inventory), *args],
                          capture_output=True, text=True, timeout=300)


def test_deploy_seeds_images_and_a_rerun_skips_them(lab_session, access, registry):
    # registry:2 is on the server already (loaded from its archive): seeding it needs no Hub.
    seed = ["--data", "registry_seed_images=registry:2",
            "--data", f"registry_seed_archives={lab_session.lab.test_image_archive}"]
    first = run_deploy(lab_session.inventory, *seed)
    assert first.returncode == 0, first.stderr[-4000:]
    assert any(op.startswith("Seed the registry") for op in first.changed_operations("registry"))

    listed = json.loads(cli(lab_session, "catalog", "--json").stdout)
    tags = {entry["repository"]: entry["tags"] for entry in listed}
    assert "2" in tags["registry"] and "latest" in tags["busybox"]

    again = run_deploy(lab_session.inventory, *seed)
    assert again.totals["success"] == 0, again.changed_operations("registry")


def test_copy_from_a_client_reports_the_pushed_digest(lab_session, access, registry, test_image_archive):
    access.load_image_archive("client1", test_image_archive)
    result = cli(lab_session, "copy", "busybox:latest", "tools/copied:1", "--on", "client1", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["target"] == f"{access.fleet.registry_address}/tools/copied:1"
    assert report["digest"] == registry.manifest_digest("tools/copied", "1")
    assert "1" in registry.tags("tools/copied")
    # The local copy the manual removes is gone; the pre-existing source image stays.
    assert access.ssh("client1", f"docker image inspect {report['target']} >/dev/null 2>&1 || echo gone") == "gone"
    access.ssh("client1", "docker image inspect busybox:latest >/dev/null")


def test_tags_of_an_unknown_repository_is_a_clear_404(lab_session, access):
    result = cli(lab_session, "tags", "does/not-exist")
    assert result.returncode == 5  # Exit.NOT_FOUND
    assert "repository 'does/not-exist': not found in the registry" in result.stderr
    assert "(404)" in result.stderr


def test_tls_to_a_plain_http_registry_is_a_clear_tls_error(lab_session, access):
    result = cli(lab_session, "--tls", "catalog")
    assert result.returncode == 3  # Exit.UNREACHABLE
    assert f"TLS failure talking to https://{access.fleet.registry_api_address}" in result.stderr


def test_unreachable_registry_is_a_clear_error():
    result = subprocess.run([REGDEPLOY, "--registry", "127.0.0.1:9", "catalog"], capture_output=True, text=True)
    assert result.returncode == 3  # Exit.UNREACHABLE
    assert "cannot reach the registry at http://127.0.0.1:9" in result.stderr


def _create_repositories(registry_url: str, source: str, names: list[str]) -> None:
    """Create repositories through the registry API: mount the source's blobs, put its manifest."""
    session = requests.Session()
    response = session.get(f"{registry_url}/v2/{source}/manifests/latest", headers={"Accept": MANIFEST_TYPES})
    response.raise_for_status()
    manifest, media_type = response.content, response.headers["Content-Type"]
    parsed = json.loads(manifest)
    digests = [parsed["config"]["digest"]] + [layer["digest"] for layer in parsed["layers"]]
    for name in names:
        for digest in digests:
            mounted = session.post(f"{registry_url}/v2/{name}/blobs/uploads/", params={"mount": digest, "from": source})
            assert mounted.status_code == 201, (name, mounted.status_code, mounted.text)
        put = session.put(f"{registry_url}/v2/{name}/manifests/v1", data=manifest,
                          headers={"Content-Type": media_type})
        assert put.status_code == 201, (name, put.status_code, put.text)


def test_listing_walks_every_page(lab_session, access, registry):
    names = [f"bulk/repo-{i:03d}" for i in range(120)]
    _create_repositories(registry.url, "busybox", names)

    result = cli(lab_session, "--page-size", "50", "catalog", "--json", "--no-tags")
    assert result.returncode == 0, result.stderr
    listed = [entry["repository"] for entry in json.loads(result.stdout)]
    assert set(names) <= set(listed)
    assert len(listed) == len(set(listed)), "a page was listed twice"
    assert len(registry.catalog(page_size=50)) == len(listed)

    # The pyinfra fact (what the deploy and the testinfra suite read) walks the same pages.
    fact = RegistryCatalog()
    settings = access.fleet.server.settings
    lines = access.ssh("registry", fact.command(port=settings.registry_port,
                                                api=astuple(registry_files.loopback_api(settings)),
                                                page_size=50)).splitlines()
    catalog = fact.process(lines)
    assert set(names) <= set(catalog)
    assert all(catalog[name] == ["v1"] for name in names)
