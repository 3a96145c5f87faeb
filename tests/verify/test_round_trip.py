"""A real push from one client and pull from another, through the deployed registry."""

import time
import uuid
from dataclasses import astuple

from regdeploy import registry_files
from regdeploy.facts import RegistryCatalog


def test_push_from_one_client_pull_on_another(access, fleet, test_image, test_image_archive):
    pusher = fleet.clients[0] if fleet.clients else fleet.server
    puller = fleet.clients[-1] if len(fleet.clients) > 1 else fleet.server
    tag = f"rt-{int(time.time())}-{uuid.uuid4().hex[:6]}"
    target = f"{fleet.registry_address}/lab/busybox:{tag}"

    if test_image_archive:
        access.load_image_archive(pusher, test_image_archive)
    access.ssh(pusher, f"docker image inspect {test_image} >/dev/null 2>&1 || docker pull -q {test_image}")
    access.ssh(pusher, f"docker tag {test_image} {target} && docker push -q {target}")

    # Read on the server over loopback with the deploy's own fact: /v2/_catalog and tags/list.
    fact = RegistryCatalog()
    api = astuple(registry_files.loopback_api(fleet.server.settings))
    catalog = fact.process(access.host(fleet.server).check_output(
        fact.command(port=fleet.server.settings.registry_port, api=api)).splitlines())
    assert tag in catalog["lab/busybox"]

    access.ssh(pusher, f"docker image rm {target}")
    access.ssh(puller, f"docker image rm {target} >/dev/null 2>&1 || true")
    access.ssh(puller, f"docker pull -q {target}")
    pushed_id = access.ssh(pusher, f"docker image inspect -f '{{{{.Id}}}}' {test_image}")
    pulled_id = access.ssh(puller, f"docker image inspect -f '{{{{.Id}}}}' {target}")
    assert pulled_id == pushed_id
    access.ssh(puller, f"docker image rm {target}")
