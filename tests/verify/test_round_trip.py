"""A real push with Docker from one client, then a pull on every host with each of its runtimes
(Docker, Podman, containerd's ctr), through the deployed registry: the same manifest digest. With
authentication, containerd pulls as a kubelet would, through CRI with the credentials the deploy put
in config.toml (ctr, without them, is refused). With registry_access, each host's rights come from
the rules for its login account: a host allowed to pull pulls, one that is not is refused, and a
host without push rights is denied a push."""

import re
import time
import uuid
from dataclasses import astuple

import pytest

from regdeploy import access as rights
from regdeploy import registry_files, runtime_config
from regdeploy.facts import RegistryCatalog

from . import cri

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
REPOSITORY = "lab/busybox"


def may(settings, action: str, repository: str = REPOSITORY, account: str | None = None) -> bool:
    """Whether the host these settings describe may `action` on `repository` as its login account (or
    as `account`)."""
    if not settings.registry_access:
        return account is None
    return action in rights.allowed(rights.parse_rules(settings.registry_access), account or settings.login_user,
                                    repository)
CTR_NAMESPACE = "regdeploy-verify"


@pytest.fixture(scope="module")
def pushed(access, fleet, test_image, test_image_archive) -> tuple[str, str]:
    """(reference, manifest digest) of a uniquely tagged image pushed with Docker from the first client
    that has Docker (the server when no client has)."""
    pusher = next((c for c in fleet.clients if may(c.settings, "push") and access.ssh(c, "command -v docker || true")),
                  fleet.server)
    tag = f"rt-{int(time.time())}-{uuid.uuid4().hex[:6]}"
    target = f"{fleet.registry_address}/{REPOSITORY}:{tag}"
    if test_image_archive:
        access.load_image_archive(pusher, test_image_archive)
    access.ssh(pusher, f"docker image inspect {test_image} >/dev/null 2>&1 || docker pull -q {test_image}")
    output = access.ssh(pusher, f"docker tag {test_image} {target} && docker push {target}")
    digest = DIGEST.findall(output)[-1]
    access.ssh(pusher, f"docker image rm {target}")

    # Read on the server over loopback with the deploy's own fact: /v2/_catalog and tags/list.
    fact = RegistryCatalog()
    api = astuple(registry_files.loopback_api(fleet.server.settings))
    catalog = fact.process(access.host(fleet.server).check_output(
        fact.command(port=fleet.server.settings.registry_port, api=api)).splitlines())
    assert tag in catalog[REPOSITORY]
    return target, digest


# Pull REF with each runtime and print the manifest digest it recorded; then remove the local copy.
PULL = {
    "docker": "docker pull -q {ref} >/dev/null && docker image inspect -f '{{{{range .RepoDigests}}}}{{{{println .}}}}"
              "{{{{end}}}}' {ref} && docker image rm {ref} >/dev/null",
    "podman": "podman pull -q {ref} >/dev/null && podman image inspect --format '{{{{.Digest}}}}' {ref} "
              "&& podman rmi {ref} >/dev/null",
    "containerd": f"ctr -n {CTR_NAMESPACE} images pull --hosts-dir {runtime_config.CONTAINERD_CERTS_DIR} {{ref}} "
                  f">/dev/null && ctr -n {CTR_NAMESPACE} images ls name=={{ref}} && ctr -n {CTR_NAMESPACE} images rm "
                  "{ref} >/dev/null",
}


def test_every_host_pulls_the_pushed_image_with_each_of_its_runtimes(access, inventory_host, host_runtimes, fleet,
                                                                      pushed):
    ref, digest = pushed
    assert host_runtimes, f"{inventory_host.name} has no runtime"
    auth = fleet.server.settings.registry_auth
    for runtime in host_runtimes:
        command = PULL[runtime].format(ref=ref)
        if auth and runtime == "containerd":
            # ctr has no credentials of its own: refused (unless the rules let anyone pull). CRI has the deploy's.
            if not may(inventory_host.settings, "pull", account="anonymous"):
                assert access.ssh(inventory_host, command, check=False) == "", "ctr without credentials"
            pulled_through_cri(access, inventory_host, ref, digest)
            continue
        logged_in = inventory_host.settings.registry_docker_login
        if auth and not (logged_in and may(inventory_host.settings, "pull")):
            # Not logged in by the deploy, or an account without the right to pull: refused, not served
            # anonymously.
            assert access.ssh(inventory_host, command, check=False) == "", runtime
            continue
        assert digest in access.ssh(inventory_host, command), f"{runtime} on {inventory_host.name}"
    settings = inventory_host.settings
    if settings.registry_access and "docker" in host_runtimes and may(settings, "pull") and not may(settings, "push"):
        # The rules give this host's account no push here: the registry denies it.
        denied = f"{ref}-denied"
        access.ssh(inventory_host, f"docker pull -q {ref} >/dev/null && docker tag {ref} {denied}")
        output = access.ssh(inventory_host, f"docker push {denied} 2>&1; docker image rm {ref} {denied} >/dev/null",
                            check=False)
        assert "denied" in output or "unauthorized" in output, output



def pulled_through_cri(access, inventory_host, ref: str, digest: str) -> None:
    """A kubelet's pull (CRI's PullImage) with the credentials the deploy gave containerd: the pushed
    manifest where the account may pull, refused where it may not; the image removed again."""
    settings = inventory_host.settings
    code, message = cri.status(access.ssh(inventory_host, cri.pull(ref), check=False))
    if not (settings.registry_docker_login and may(settings, "pull")):
        assert code not in (None, 0), f"CRI pulled {ref} on {inventory_host.name} without the right to"
        return
    assert code == 0, f"CRI's PullImage on {inventory_host.name}: grpc-status {code} {message}"
    listed = access.ssh(inventory_host, f"ctr -n {cri.NAMESPACE} images ls name=={ref}")
    assert digest in listed, listed
    assert cri.status(access.ssh(inventory_host, cri.remove(ref)))[0] == 0


def test_the_replicas_cache_the_pushed_image_where_their_address_points(access, fleet, pushed, cache_lb_name):
    """registry_lb_cache: the push went through a replica, which recorded its manifest's descriptor in
    the cache at the load balancers' address: on the one holding it, and only there (another's stays as
    it was emptied); with ipvs, at the first load balancer's own address."""
    from regdeploy import load_balancer

    _, digest = pushed
    settings = fleet.server.settings
    lb = next(h for h in fleet.lbs if h.name == cache_lb_name)
    # At registry_lb_vip, or (without one, or with ipvs: each replica holds that one) the first's own.
    at = settings.blob_cache_address.rpartition(":")[0]
    assert at == (settings.vip_address if settings.vip_address and not settings.ipvs else fleet.lbs[0].address)
    holds = at == lb.address or at == settings.vip_address and \
        f" {settings.vip_address}/" in access.ssh(cache_lb_name, "ip -o -4 addr show")
    found = access.ssh(cache_lb_name, load_balancer.cache_cli(f"exists blobs::{digest}")).strip()
    assert found == ("1" if holds else "0"), (cache_lb_name, holds, found)
