"""Every script regdeploy sends to a host, rendered for each plan and mode through the code that
renders it on a deploy: the corpus that tests/golden/ holds and shellcheck reads.

    python -m tests.scripts           # say which golden files are stale
    python -m tests.scripts --update  # rewrite tests/golden/ from the templates

A change to a template or to what renders it shows up as a diff of tests/golden/ in review.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Iterator

from regdeploy import (credentials, daemon_config, load_balancer, maintenance, registry_files, retire, runtime_config,
                       security)
from regdeploy.daemon_config import INSECURE_REGISTRIES_FORMAT
from regdeploy.docker_packages import START_DOCKER, with_install
from regdeploy.facts import DockerHostState, host_state_arguments
from regdeploy.gc_schedule import gc_files, unwanted
from regdeploy.host_state import HostState
from regdeploy.registry_files import GC_FILES, GC_UNIT, PRUNE_DIR
from regdeploy.registry_plan import Migration, RegistryPlan, Storage
from regdeploy.registry_run import archive_upload, desired_container, run_script
from regdeploy.rendering import render, template_paths
from regdeploy.settings import validate_hosts

GOLDEN = Path(__file__).resolve().parent / "golden"
HOLDER = "regdeploy test on ctl (pid 1, started 00:00:00)"
SHA = "0" * 64

# The manual's plain HTTP, TLS, TLS with authentication.
MODES = {"plain": {}, "tls": {"registry_tls": True},
         "tls-auth": {"registry_tls": True, "registry_auth": True, "registry_users": ["ci"],
                      "registry_login_local_users": ["builder"]}}

# Every kind of plan the run-registry script carries out.
PLANS = {
    "create": RegistryPlan("create"),
    "create-clear-aside": RegistryPlan("create", clear_aside=True),
    "start": RegistryPlan("start", ("it is stopped",)),
    "recreate": RegistryPlan("recreate", ("ports: 5000->5000 -> 5001->5000",), previous_restart="always"),
    "adopt-move": RegistryPlan("adopt", ("found image registry:2",), previous_restart="always",
                               migration=Migration(Storage("volume", "/var/lib/docker/volumes/v/_data", "v"),
                                                   "/var/lib/registry", repositories=2, bytes=10,
                                                   redo_partial=True)),
}


def server(**data):
    return validate_hosts([("reg1", data, {"registry_servers"}), ("client1", data, {"docker_clients"})],
                          check_files=False)


def replicas(lbs=("lb",), **extra):
    """Two replicas on S3 behind the load balancers `lbs` (name or (name, ssh_hostname))."""
    data = {"registry_storage": "s3", "registry_s3_bucket": "images", "registry_s3_access_key": "key",
            "registry_s3_endpoint": "http://rgw:7480", **extra}
    balancers = [(lb, data, {"registry_lb"}) if isinstance(lb, str) else
                 (lb[0], {**data, "ssh_hostname": lb[1]}, {"registry_lb"}) for lb in lbs]
    return validate_hosts([("reg1", data, {"registry_servers"}), ("reg2", data, {"registry_servers"}), *balancers],
                          check_files=False)


# Two load balancers sharing an address (keepalived), and what `ip -o -4 addr show` says on the first.
VIP_LBS = (("lb1", "10.0.0.11"), ("lb2", "10.0.0.12"))
LB1_ADDRESSES = ["1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever",
                 "2: eth0@if17    inet 10.0.0.11/24 brd 10.0.0.255 scope global eth0\\       valid_lft forever"]


def ipvs_replicas(**extra):
    """Two replicas on S3 (10.0.0.21, .22) behind VIP_LBS with registry_lb_mode=ipvs (IPVS forwards to
    each replica's IPv4 address)."""
    data = {**IPVS_DATA, **extra}
    return validate_hosts([(name, {**data, "ssh_hostname": address}, {"registry_servers"}) for name, address in IPVS_REPLICAS]
                          + [(name, {**data, "ssh_hostname": address}, {"registry_lb"}) for name, address in VIP_LBS],
                          check_files=False)


IPVS_REPLICAS = (("reg1", "10.0.0.21"), ("reg2", "10.0.0.22"))
IPVS_DATA = {"registry_storage": "s3", "registry_s3_bucket": "images", "registry_s3_access_key": "key",
             "registry_s3_endpoint": "http://rgw:7480", "registry_lb_vip": "10.0.0.100/24", "registry_lb_mode": "ipvs"}


def fact_command(host) -> str:
    return DockerHostState().command(**host_state_arguments(host, HOLDER))


# The replicas' secrets, as the environment would give them (the golden files show where they go).
SECRETS = {credentials.S3_ENV: "golden-s3-secret", credentials.HTTP_SECRET_ENV: "golden-http-secret"}


def corpus() -> dict[str, str]:
    """{golden file name: rendered text}; the names end in .sh for what a shell runs."""
    saved = {name: os.environ.get(name) for name in SECRETS}
    os.environ.update(SECRETS)
    # regdeploy reads a secret once per process (security._passwords): these, not an earlier test's,
    # and none of these left for a later one.
    security._passwords.clear()
    try:
        return dict(_scripts())
    finally:
        security._passwords.clear()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _scripts() -> Iterator[tuple[str, str]]:
    for mode, data in MODES.items():
        fleet = server(**data)
        settings, client = fleet["reg1"], fleet["client1"]
        desired = desired_container(settings, settings.registry_config_path, "a" * 64)
        for name, plan in PLANS.items():
            yield (f"run-registry.{name}.{mode}.sh",
                   run_script(settings, plan, desired, aside="registry.aside",
                              notice=plan.notice("registry", "registry.aside")))
        for template in ("registry-backup", "registry-restore", "registry-catalog"):
            yield (f"{template}.{mode}.sh",
                   registry_files.server_script(settings, f"{template}.sh.j2", HOLDER, page_size=100))
        for dry_run in (False, True):
            yield (f"registry-gc{'.dry-run' if dry_run else ''}.{mode}.sh",
                   registry_files.server_script(settings, "registry-gc.sh.j2", HOLDER, page_size=100,
                                                delete_untagged=True, dry_run=dry_run))
        if mode == "plain":
            # regdeploy prune: the storage listing, and the collection with the rules' deletions first.
            yield "registry-storage.sh", registry_files.server_script(settings, "registry-storage.sh.j2", HOLDER)
            yield ("registry-storage.pulls.sh",  # a rule with pulled=7d: the access log too
                   registry_files.server_script(settings, "registry-storage.sh.j2", HOLDER, pulls_window=7 * 86400))
            sha = "sha256:" + "1" * 64
            yield ("registry-gc.prune.plain.sh",
                   registry_files.server_script(settings, "registry-gc.sh.j2", HOLDER, page_size=100,
                                                delete_untagged=True, prune={
                                                    "repositories": ["ci/app"],
                                                    "snapshot": [f"ci/app v1 {sha}", f"ci/app latest {sha}"],
                                                    "tags": [f"ci/app v1 {sha}"], "manifests": []}))
        yield f"registry-config.{mode}.yml", registry_files.registry_config(settings)
        # The fact, as the deploy asks it (regdeploy.deploys) on a server and on a client; without
        # host_caches once.
        for role, host in (("server", settings), ("client", client)):
            yield f"docker-host-state.{role}.{mode}.sh", fact_command(host)
        if mode == "plain":
            uncached = server(host_caches=False)["client1"]
            yield "docker-host-state.client.no-caches.plain.sh", fact_command(uncached)
        for action in ("reload", "restart"):
            yield (f"apply-daemon-json.{action}.{mode}.sh",
                   render("apply-daemon-json.sh.j2", path=client.docker_daemon_json, action=action, validate=True,
                          registry=client.registry_address, content='{\n  "debug": true\n}\n',
                          secure=client.registry_tls, insecure_registries_format=INSECURE_REGISTRIES_FORMAT))
        early = with_install(client, HostState(), daemon_config.plan_daemon_json(
            HostState(), client.docker_daemon_json, client.registry_address, (), "client1",
            secure=client.registry_tls), True)
        if early:  # the plain mode's fresh client: insecure-registries goes in with the install
            yield f"daemon-json-before-install.{mode}.sh", early.before
            yield f"daemon-json-after-install.{mode}.sh", early.after
    # registry_access: the registry takes tokens from regdeploy's token service.
    access_fleet = server(registry_tls=True, registry_auth=True, registry_users=["ci", "nodes"],
                          registry_access=["ci * pull,push,delete", "nodes * pull"])
    token_server = access_fleet["reg1"]
    yield "registry-config.tls-access.yml", registry_files.registry_config(token_server)
    for template in ("registry-catalog", "registry-backup"):
        yield (f"{template}.tls-access.sh",
               registry_files.server_script(token_server, f"{template}.sh.j2", HOLDER, page_size=100))
    yield "docker-host-state.server.tls-access.sh", fact_command(token_server)
    yield "regdeploy-token.service", registry_files.token_unit(token_server, "0123456789abcdef")
    yield "token-service.json", registry_files.token_service_config(token_server)
    yield ("start-token-service.sh",
           render("start-token-service.sh.j2", unit=registry_files.TOKEN_UNIT, port=5002,
                  health="https://127.0.0.1:5002/healthz"))
    yield ("stop-token-service.sh",
           render("stop-token-service.sh.j2", unit=registry_files.TOKEN_UNIT,
                  paths=registry_files.token_service_paths(token_server)))
    archived = server(registry_image_archive="/srv/registry 2.tar", registry_image_archive_sha256=SHA)["reg1"]
    upload = archive_upload(archived)
    assert upload is not None
    yield "load-image-archive.check.sh", upload.then
    yield "load-image-archive.sh", upload.load
    yield "check-archive.sh", render("check-archive.sh.j2", archive="/tmp/pyinfra-0123abcd", sha256=SHA)
    yield ("install-docker.sh",
           render("install-docker.sh.j2", before="", install="DEBIAN_FRONTEND=noninteractive apt-get -y install "
                  "docker.io curl", after=START_DOCKER))
    yield ("docker-ce-repository.sh",
           render("docker-ce-repository.sh.j2", base="https://download.docker.com/linux/debian", codename="bookworm",
                  keyring="/etc/apt/keyrings/docker.gpg", source_file="/etc/apt/sources.list.d/docker.sources"))
    yield ("registry-login.sh",
           render("registry-login.sh.j2", registry="registry:5000", user="ci", stamp="ci $2b$10$hash",
                  docker=dict(config_dir=registry_files.DOCKER_CONFIG_DIR, stamp_path=registry_files.LOGIN_STAMP),
                  podman=dict(auth_file=registry_files.PODMAN_AUTH, stamp_path=registry_files.PODMAN_LOGIN_STAMP),
                  containerd=None))
    yield ("push-images.sh",
           render("push-images.sh.j2", archive=None, images=[("registry:2", "registry:5000/library/registry:2")]))
    yield ("push-images.archive.sh",
           render("push-images.sh.j2", archive="/var/cache/regdeploy/seed.tar",
                  images=[("app:1", "registry:5000/team/app:1")]))
    # containerd's config.toml: config_path alone, regdeploy's credentials removed, and put in by the login.
    masked = ('version = 2\n[plugins."io.containerd.grpc.v1.cri".registry.configs."registry:5000".auth]\n'
              '  username = "ci"\n  password = ' + runtime_config.MASKED.format(4) + '\n')
    containerd = {}
    for name, current, login, ours in (("", None, None, False), (".logout", masked, None, True),
                                       (".login", masked, runtime_config.ContainerdLogin("ci", False), True)):
        plan = runtime_config.plan_containerd_config(current, 1, "host 'c1'", "registry:5000", login, ours)
        containerd[name] = render("apply-containerd-config.sh.j2", path=runtime_config.CONTAINERD_CONFIG,
                                  content=plan.content, login=plan.login, stamp="ci $2b$10$hash",
                                  stamp_path=registry_files.CONTAINERD_LOGIN_STAMP,
                                  password_on_stdin=runtime_config.PASSWORD_ON_STDIN)
        if name != ".login":
            yield f"apply-containerd-config{name}.sh", containerd[name]
    yield ("registry-login.local-users.sh",
           render("registry-login.sh.j2", registry="registry:5000", user="ci", stamp="ci $2b$10$hash",
                  docker=None, podman=None, containerd=None, local_users=["builder", "ci-runner"],
                  local_stamp=registry_files.LOCAL_LOGIN_STAMP))
    yield ("registry-logout.local-users.sh",
           render("local-docker-user.sh.j2", local_stamp=registry_files.LOCAL_LOGIN_STAMP)
           + "{ log_out_local_user builder registry:5000; }")
    yield ("registry-login.containerd.sh",
           render("registry-login.sh.j2", registry="registry:5000", user="ci", stamp="ci $2b$10$hash",
                  docker=None, podman=None, containerd=containerd[".login"]))
    for name, content in (("put-file.sh", "CA $x `y`\n"), ("put-file.secret.sh", None)):
        yield name, render("put-file.sh.j2", path="/etc/regdeploy/my file", mode="600", dir_mode="700",
                           content=content)
    scheduled = server(registry_gc_schedule="Sun 03:00")["reg1"]
    files = gc_files(scheduled)
    yield "regdeploy-gc.service", files["gc_service"]
    yield "regdeploy-gc.timer", files["gc_timer"]
    for schedule in ("Sun 03:00", ""):
        puts = [render("put-file.sh.j2", path=GC_FILES[label], mode="644", content=content)
                for label, content in files.items()] if schedule else []
        yield (f"schedule-gc{'.remove' if not schedule else ''}.sh",
               render("schedule-gc.sh.j2", unit=GC_UNIT, schedule=schedule, files=puts, paths=list(GC_FILES.values()),
                      unwanted=unwanted(files) if schedule else [], prune_dir=PRUNE_DIR))
    # With registry_retention the timer's collection prunes first, planned on the server.
    pruning = server(registry_gc_schedule="Sun 03:00", registry_retention=["* keep=3 protect=latest"])["reg1"]
    yield "registry-gc.scheduled-prune.sh", gc_files(pruning)["gc_script"]
    access_replicas = replicas(registry_tls=True, registry_auth=True, registry_users=["ci"],
                               registry_access=["ci * pull,push,delete"])
    yield "haproxy.tls-access.cfg", load_balancer.haproxy_config(access_replicas["lb"])
    fleet = replicas()
    balancer = load_balancer.haproxy_config(fleet["lb"])
    yield "haproxy.cfg", balancer
    shared = replicas(lbs=VIP_LBS, registry_lb_vip="10.0.0.100/24")
    lb1 = shared["lb1"]
    yield "keepalived.conf", load_balancer.keepalived_config(lb1, LB1_ADDRESSES)
    # registry_lb_cache (the default): redis on every load balancer, the replicas' config.yml points at it.
    yield "redis.conf", load_balancer.cache_config()
    yield "flush-blob-cache.sh", next(f.content for f in load_balancer.cache_files(lb1) if f.label == "cache_flush")
    yield "registry-config.replica-cache.yml", registry_files.registry_config(shared["reg1"])
    for step in load_balancer.lb_plan(lb1, HostState(lines={"addresses": LB1_ADDRESSES})).steps:
        yield (f"apply-lb-config.{step.service}.sh",
               render("apply-lb-config.sh.j2", path=step.path, content=step.content, service=step.service,
                      check=step.check, check_passes=step.check_passes, wait_url=step.wait_url))
    for name, fleet in (("replica", fleet), ("replica.two-lbs", shared)):
        replica = fleet["reg1"]
        yield (f"run-registry.recreate.{name}.sh",
               run_script(replica, PLANS["recreate"], desired_container(replica, replica.registry_config_path,
                                                                        "a" * 64), aside="registry.aside"))
    # gc and prune on replicas: each step of the maintenance script (the S3 key comes on stdin).
    sha = "sha256:" + "1" * 64
    for step in maintenance.STEPS:
        extra = {"delete_untagged": True, "prune": {
            "repositories": ["ci/app"], "snapshot": [f"ci/app v1 {sha}", f"ci/app latest {sha}"],
            "tags": [f"ci/app v1 {sha}"], "manifests": [f"ci/app {sha}"]}} if step == "collect" else \
            {"pulls_window": 7 * 86400} if step == "pulls" else {}
        yield f"replica-maintenance.{step}.sh", maintenance.replica_script(shared["reg1"], step, HOLDER, **extra)
    yield "docker-host-state.lb.two-lbs.sh", fact_command(shared["lb2"])
    # registry_lb_mode=ipvs: keepalived's virtual servers and its check of a replica, the replica's
    # address on its loopback (and its removal), its drain by REJECT, the facts both read.
    direct = ipvs_replicas(registry_tls=True)
    yield "keepalived.ipvs.conf", load_balancer.keepalived_config(direct["lb1"], LB1_ADDRESSES)
    yield "replica-check.sh", next(f.content for f in load_balancer.ipvs_files(direct["lb1"]) if f.label == "ipvs_check")
    address = load_balancer.replica_address_plan(direct["reg1"], HostState())
    yield "apply-lb-address.sh", address.apply
    yield "lb-address.service", next(f.content for f in address.files if f.label == "lb_address_unit")
    yield "remove-lb-address.sh", render("remove-lb-address.sh.j2", remove=("10.0.0.100",), retire=True,
                                         unit=load_balancer.REPLICA_UNIT, unit_path=load_balancer.REPLICA_UNIT_PATH,
                                         sysctl=load_balancer.REPLICA_SYSCTL_PATH)
    ipvs_replica = direct["reg1"]
    yield ("run-registry.recreate.replica.ipvs.sh",
           run_script(ipvs_replica, PLANS["recreate"], desired_container(ipvs_replica, ipvs_replica.registry_config_path,
                                                                         "a" * 64), aside="registry.aside"))
    yield "replica-maintenance.readonly.ipvs.sh", maintenance.replica_script(ipvs_replica, "readonly", HOLDER)
    yield "docker-host-state.lb.ipvs.sh", fact_command(direct["lb2"])
    yield "docker-host-state.replica.ipvs.sh", fact_command(ipvs_replica)
    # A replica taken out (now in docker_clients): drained before the load balancers drop it, then retired.
    former = validate_hosts([(name, {**IPVS_DATA, "ssh_hostname": address}, {group}) for (name, address), group in zip(
        (*IPVS_REPLICAS, ("reg3", "10.0.0.23"), *VIP_LBS),
        ("registry_servers", "registry_servers", "docker_clients", "registry_lb", "registry_lb"))],
        check_files=False)["reg3"]
    yield "drain-former-replica.sh", render("drain-former-replica.sh.j2", name=former.registry_container_name,
                                            **retire.lb_replica_args(former))
    yield "retire-registry.ipvs.sh", render("retire-registry.sh.j2", **retire.retire_script_args(former))
    yield "retire-registry.sh", render("retire-registry.sh.j2", **retire.retire_script_args(shared["lb2"]))


def shell_templates() -> set[str]:
    """The templates a shell runs (top-level scripts and the parts they include)."""
    return {name for name in template_paths() if name.endswith(".sh.j2")}


def stale() -> list[str]:
    """The golden files that differ from the corpus, are missing, or have no corpus entry."""
    wanted = corpus()
    found = {p.name for p in GOLDEN.glob("*")} if GOLDEN.is_dir() else set()
    problems = [name for name, text in wanted.items()
                if name not in found or (GOLDEN / name).read_text() != text]
    return problems + sorted(found - set(wanted))


def update() -> None:
    GOLDEN.mkdir(exist_ok=True)
    wanted = corpus()
    for path in GOLDEN.glob("*"):
        if path.name not in wanted:
            path.unlink()
    for name, text in wanted.items():
        (GOLDEN / name).write_text(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true", help="rewrite tests/golden/ from the templates")
    if parser.parse_args().update:
        update()
        print(f"wrote {len(corpus())} files to {GOLDEN}")
    else:
        names = stale()
        print("\n".join(names) or "tests/golden/ is up to date")
        sys.exit(1 if names else 0)
