"""Several replicas on shared S3 storage behind a load balancer, decided without a host: which
inventories are refused, what each replica's config.yml and the load balancer's haproxy.cfg become,
what the LB-only host is asked and given, and when a switch to S3 must stop."""

from __future__ import annotations

import re

import pytest
import yaml

from regdeploy import credentials, load_balancer, managed, registry_files, registry_plan, security
from regdeploy.registry_files import fact_checks, holds_secrets, registry_config
from regdeploy.registry_plan import MOVED_MARKER as MOVED, Migration, PlanError, RegistryPlan, ServerState, Storage
from regdeploy.host_state import HostState
from regdeploy.settings import ConfigError, validate_hosts
from regdeploy.docker_packages import packages_to_check

S3 = {"registry_storage": "s3", "registry_s3_endpoint": "http://rgw.lan:7480", "registry_s3_bucket": "images",
      "registry_s3_access_key": "AK1"}
SECRETS = {credentials.S3_ENV: "s3-secret: 'quoted' #not a comment", credentials.HTTP_SECRET_ENV: "shared-http-secret"}


@pytest.fixture(autouse=True)
def secrets_in_the_environment(monkeypatch):
    security._passwords.clear()
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    yield
    security._passwords.clear()


def hosts(shared=None, servers=("reg1", "reg2", "reg3"), lb=("lb1",), clients=("c1",), extra=None):
    data = {**S3, **(shared or {})}
    entries = [(name, {**data, "ssh_hostname": f"10.0.0.{i + 1}"}, {"registry_servers"})
               for i, name in enumerate(servers)]
    entries += [(name, {**data, "ssh_hostname": "10.0.0.100"}, {"registry_lb"}) for name in lb]
    entries += [(name, data, {"docker_clients"}) for name in clients]
    return entries + list(extra or [])


def test_replicas_behind_the_load_balancer_share_its_address():
    settings = validate_hosts(hosts(), check_files=False)
    assert {s.registry_address for s in settings.values()} == {"lb1:5000"}
    assert settings["reg1"].replicas == (("reg1", "10.0.0.1"), ("reg2", "10.0.0.2"), ("reg3", "10.0.0.3"))
    assert settings["c1"].lbs == (("lb1", "10.0.0.100"),)
    assert settings["reg1"].first_replica and not settings["reg2"].first_replica
    assert settings["reg2"].several_replicas and settings["reg2"].is_server
    # The load balancer alone uses no registry: no Docker, no trust; a client that is also the LB does.
    assert settings["lb1"].is_lb and not settings["lb1"].uses_registry and settings["c1"].uses_registry
    # The certificate covers every replica by name and address besides the load balancer's name.
    assert set(settings["reg1"].tls_names) == {"lb1", "reg1", "10.0.0.1", "reg2", "10.0.0.2", "reg3", "10.0.0.3"}
    assert settings["reg1"].lb_stats_urls == ("http://10.0.0.100:8404/stats",)


def test_an_operators_own_load_balancer_is_registry_host():
    settings = validate_hosts(hosts(shared={"registry_host": "registry.lan"}, lb=()), check_files=False)
    assert settings["c1"].registry_address == "registry.lan:5000" and settings["reg1"].lb_stats_urls == ()


@pytest.mark.parametrize("entries,expected", [
    # Several replicas on their own disks: a pull would miss what was pushed to another.
    (hosts(shared={"registry_storage": "filesystem"}), "each replica would keep its own images"),
    (hosts(lb=()), "need one address for clients: put a host in 'registry_lb'"),
    (hosts(lb=(), extra=[("reg1", {}, {"registry_lb"})]), "cannot also be in 'registry_servers'"),
    (hosts(shared={"registry_s3_bucket": ""}), "registry_storage=s3 needs registry_s3_bucket"),
    (hosts(shared={"registry_s3_access_key": ""}), "registry_storage=s3 needs registry_s3_access_key"),
    (hosts(shared={"registry_s3_bucket": "Not_A_Bucket"}), "is not an S3 bucket name"),
    (hosts(shared={"registry_storage": "nfs"}), "registry_storage='nfs' is unknown"),
    (hosts(shared={"registry_lb_stats_port": 5000}), "registry_lb_stats_port=5000 is also registry_port"),
    # A collection on one replica deletes layers another is being pushed.
    (hosts(shared={"registry_gc_schedule": "daily"}), "registry_gc_schedule with several replicas"),
    (hosts(shared={"registry_proxy_remote_url": "https://up.example"}), "runs on a single server only"),
    ([*hosts(clients=()), ("c1", {**S3, "registry_s3_bucket": "other"}, {"docker_clients"})],
     "hosts disagree on registry_s3_bucket"),
])
def test_shapes_that_would_lose_or_split_images_are_refused(entries, expected):
    with pytest.raises(ConfigError, match=expected):
        validate_hosts(entries, check_files=False)


@pytest.mark.parametrize("missing,expected", [
    (credentials.HTTP_SECRET_ENV, "no http.secret for the registry replicas"),
    (credentials.S3_ENV, "no S3 secret key for the access key 'AK1'"),
])
def test_a_missing_secret_is_refused_before_any_host_is_touched(monkeypatch, tmp_path, missing, expected):
    monkeypatch.delenv(missing)
    files = {"registry_s3_secret_file": str(tmp_path / "s3"), "registry_http_secret_file": str(tmp_path / "http")}
    with pytest.raises(ConfigError, match=expected):
        validate_hosts(hosts(shared=files), check_files=True)


def test_a_secret_file_others_may_read_is_refused(monkeypatch, tmp_path):
    monkeypatch.delenv(credentials.HTTP_SECRET_ENV)
    path = tmp_path / "http"
    path.write_text("from-the-file\n")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="has mode 644"):
        validate_hosts(hosts(shared={"registry_http_secret_file": str(path)}), check_files=True)
    path.chmod(0o600)
    assert security.http_secret(validate_hosts(hosts(shared={"registry_http_secret_file": str(path)}))["reg1"]) \
        == "from-the-file"


def test_each_replica_serves_the_bucket_with_the_shared_secret():
    settings = validate_hosts(hosts(), check_files=False)["reg2"]
    config = yaml.safe_load(registry_config(settings))
    storage = config["storage"]
    assert storage["s3"] == {"accesskey": "AK1", "secretkey": SECRETS[credentials.S3_ENV], "region": "us-east-1",
                             "regionendpoint": "http://rgw.lan:7480", "forcepathstyle": True, "secure": False,
                             "v4auth": True, "bucket": "images", "rootdirectory": "/"}
    # Clients may not reach the store: layers come through the registry. One cache they all share
    # (registry_lb_cache): redis on the load balancer, whose password derives from http.secret.
    assert storage["redirect"] == {"disable": True} and "filesystem" not in storage
    assert storage["cache"] == {"blobdescriptor": "redis"}
    password = security.cache_password(settings)
    assert config["redis"]["addr"] == "10.0.0.100:6379" and config["redis"]["password"] == password
    assert len(password) == 64 and SECRETS[credentials.HTTP_SECRET_ENV] not in password
    assert config["redis"]["dialtimeout"] == config["redis"]["readtimeout"] == "200ms"
    assert config["http"]["secret"] == SECRETS[credentials.HTTP_SECRET_ENV]
    assert config["http"]["draintimeout"] == "20s"
    # Every replica's file is the same; it holds secrets: 0600 and never diffed.
    assert {registry_config(s) for s in validate_hosts(hosts(), check_files=False).values() if s.is_server} == \
        {registry_config(settings)}
    assert holds_secrets(settings)


def test_one_server_on_its_disk_keeps_its_config():
    settings = validate_hosts([("reg1", {}, {"registry_servers"})], check_files=False)["reg1"]
    config = yaml.safe_load(registry_config(settings))
    assert config["storage"]["filesystem"] == {"rootdirectory": "/var/lib/registry"}
    assert "secret" not in config["http"] and "draintimeout" not in config["http"] and not holds_secrets(settings)
    # One server on S3 (AWS: no endpoint) makes its own http.secret; its key still makes the file private.
    aws = validate_hosts([("reg1", {**S3, "registry_s3_endpoint": ""}, {"registry_servers"})], check_files=False)
    s3 = yaml.safe_load(registry_config(aws["reg1"]))["storage"]["s3"]
    assert "regionendpoint" not in s3 and s3["secure"] is True and holds_secrets(aws["reg1"])


@pytest.mark.parametrize("shared,mode,check", [
    ({}, "mode http", "check inter 500ms fall 2 rise 2"),
    # TLS ends at haproxy and starts again to the replicas, verified; checks speak TLS to them.
    ({"registry_tls": True}, "mode http",
     "check inter 500ms fall 2 rise 2 ssl verify required ca-file /etc/haproxy/regdeploy/ca.crt verifyhost lb1"),
])
def test_haproxy_sends_to_every_replica_and_checks_each(shared, mode, check):
    settings = validate_hosts(hosts(shared=shared), check_files=False)["lb1"]
    config = load_balancer.haproxy_config(settings)
    servers = [line.split() for line in config.splitlines() if line.strip().startswith("server ")]
    assert [(s[1], s[2]) for s in servers] == [("reg1", "10.0.0.1:5000"), ("reg2", "10.0.0.2:5000"),
                                               ("reg3", "10.0.0.3:5000")]
    assert all(" ".join(s[3:]) == check for s in servers)
    assert mode in config and "bind :5000" in config and "bind :8404" in config
    assert ("retry-on conn-failure empty-response response-timeout 503" in config) == (mode == "mode http")
    assert "option redispatch 1" in config and "option httpchk GET /v2/" in config
    # A replica whose machine died answers nothing: a read it has not begun to answer goes to another,
    # a short one after 5 s, a layer after 15 s (the short rule last: it wins); writes keep 10 minutes.
    assert "retry-on conn-failure empty-response response-timeout 503" in config
    assert config.index("set-timeout server 15s if METH_GET\n") < \
        config.index("set-timeout server 5s if METH_HEAD || METH_GET short_path\n")
    assert "timeout server 10m" in config and "shutdown-sessions" not in config


def test_with_accounts_haproxy_also_passes_the_token_port_to_every_replicas_token_service():
    access = {"registry_tls": True, "registry_auth": True, "registry_users": ["ci"],
              "registry_access": ["ci * pull,push"]}
    settings = validate_hosts(hosts(shared=access), check_files=False)
    config = load_balancer.haproxy_config(settings["lb1"])
    token = config[config.index("frontend token"):config.index("frontend stats")]
    assert "bind :5002" in token and "option httpchk GET /healthz" in token
    assert [line.split()[1:3] for line in token.splitlines() if line.strip().startswith("server ")] == [
        ["reg1", "10.0.0.1:5002"], ["reg2", "10.0.0.2:5002"], ["reg3", "10.0.0.3:5002"]]
    # The realm names the load balancer; each replica's own scripts ask their own service on loopback.
    assert registry_files.token_realm(settings["reg2"]) == "https://lb1:5002/token"
    assert registry_files.loopback_api(settings["reg2"]).token_connect == "lb1:5002:127.0.0.1:5002"
    assert "frontend token" not in load_balancer.haproxy_config(validate_hosts(hosts(), check_files=False)["lb1"])
    with pytest.raises(ConfigError, match="registry_token_port=8404 is also registry_lb_stats_port"):
        validate_hosts(hosts(shared={**access, "registry_token_port": 8404}), check_files=False)


def test_the_load_balancer_host_is_asked_about_haproxy_only():
    settings = validate_hosts(hosts(shared={"registry_lb_cache": False}), check_files=False)
    assert packages_to_check(settings["lb1"]) == ["haproxy", "curl"]
    # And, as every host, which regdeploy deployed it last; whether haproxy runs and starts at boot.
    assert fact_checks(settings["lb1"]) == (("lines", "managed_by", managed.PATH),
                                            # a former replica's registry stops (regdeploy.retire)
                                            ("file", "former_registry", "/etc/regdeploy/config.yml"),
                                            ("file", "haproxy_cfg", load_balancer.CONFIG_PATH),
                                            # TLS files an earlier run wrote are removed without TLS
                                            ("file", "lb_pem", load_balancer.PEM_PATH),
                                            ("file", "lb_ca", load_balancer.CA_PATH),
                                            ("running", "haproxy.service", "haproxy.service"),
                                            ("enabled", "haproxy.service", "haproxy.service"))
    assert "haproxy" not in packages_to_check(settings["reg1"])
    assert ("file", "haproxy_cfg", load_balancer.CONFIG_PATH) not in fact_checks(settings["c1"])
    # A client that is also the load balancer gets both.
    both = validate_hosts(hosts(lb=(), extra=[("c2", S3, {"docker_clients", "registry_lb"})]), check_files=False)["c2"]
    assert both.uses_registry and "docker.io" in packages_to_check(both) and "haproxy" in packages_to_check(both)


def test_a_replaced_replica_waits_until_the_load_balancer_sends_it_requests():
    from regdeploy.registry_run import desired_container, run_script

    settings = validate_hosts(hosts(), check_files=False)["reg2"]
    desired = desired_container(settings, settings.registry_config_path, "0" * 64)
    script = run_script(settings, RegistryPlan(action="recreate"), desired, "registry.regdeploy-old")
    assert "lb_pages=http://10.0.0.100:8404/stats" in script and "-v s=reg2" in script
    one = validate_hosts([("reg1", {}, {"registry_servers"})], check_files=False)["reg1"]
    assert "stats;csv" not in run_script(one, RegistryPlan(action="recreate"),
                                         desired_container(one, one.registry_config_path, "0" * 64), "x")


@pytest.mark.parametrize("storage,data_dir,migration,action,outcome", [
    # regdeploy's own registry on this disk, switched to S3: its images are copied into the bucket first.
    ("s3", "data", False, "recreate", "/var/lib/registry"),
    ("s3", "data", False, "create", "/var/lib/registry"),
    ("s3", "data", False, "adopt", "/var/lib/registry"),  # started by hand on registry_data_dir
    ("s3", "data", False, "none", ""),  # already on S3: the directory is not the registry's
    ("s3", "moved", False, "recreate", ""),  # copied before: a stale copy, never copied again
    ("s3", "empty", False, "recreate", ""),
    ("s3", "absent", False, "create", ""),
    # Images elsewhere, or an unfinished copy: they would be left behind.
    ("s3", "empty", True, "adopt", "refused: would not serve them"),
    ("s3", "partial", False, "recreate", "refused: would not serve them"),
    # Back to the disk after a move: the disk's copy lacks what was pushed since.
    ("filesystem", "moved", False, "recreate", "refused: old copy without what was pushed since"),
    ("filesystem", "data", False, "recreate", ""),
    ("filesystem", "empty", True, "adopt", ""),  # the adoption path moves it onto the disk, as before
])
def test_a_switch_of_storage_copies_into_the_bucket_or_stops_where_images_would_be_lost(
        storage, data_dir, migration, action, outcome):
    move = Migration(Storage("volume", "/var/lib/docker/volumes/x/_data", "x"), "/var/lib/registry", 2, 10, False)
    plan = RegistryPlan(action=action, migration=move if migration else None)
    if outcome.startswith("refused: "):
        with pytest.raises(PlanError, match=outcome[len("refused: "):] + ".*Nothing was changed"):
            registry_plan.plan_storage(storage, "/var/lib/registry", ServerState(data_dir=data_dir), plan)
        return
    decided = registry_plan.plan_storage(storage, "/var/lib/registry", ServerState(data_dir=data_dir), plan)
    assert decided.to_bucket == outcome
    assert (decided.action, decided.migration) == (plan.action, plan.migration)


def test_the_copy_into_the_bucket_is_checked_before_the_swap_and_the_key_stays_off_the_command_line():
    from regdeploy.registry_run import desired_container, run_script

    settings = validate_hosts(hosts(), check_files=False)["reg1"]
    desired = desired_container(settings, settings.registry_config_path, "0" * 64)
    plan = RegistryPlan(action="recreate", to_bucket="/var/lib/registry")
    script = run_script(settings, plan, desired, "registry.regdeploy-old", plan.notice("registry", "x"))
    # The order that keeps the images: stop, refuse a bucket holding a registry, copy, verify, swap, mark.
    steps = ["docker stop", "already holds a registry", "s3 -o /dev/null -T", "verify_copy\n",
             'docker rename "$name" "$aside"', "docker run -d --name \"$name\"", MOVED]
    positions = [script.index(step) for step in steps]
    assert positions == sorted(positions), dict(zip(steps, positions))
    assert "bucket=http://rgw.lan:7480/images\n" in script and "--aws-sigv4 aws:amz:us-east-1:s3 " in script
    assert SECRETS[credentials.S3_ENV] not in script and 'cat > "$cred"' in script
    assert "rm -r /var/lib/registry/docker" in plan.notice("registry", "x")
    assert "copy the images in /var/lib/registry into the S3 bucket" in plan.summary("registry")


def two_lbs(vip="10.0.0.200/24", lbs=(("lb1", "10.0.0.101"), ("lb2", "10.0.0.102")), **shared):
    entries = [e for e in hosts(lb=(), shared={"registry_lb_vip": vip, **shared} if vip else shared)]
    data = {**S3, **({"registry_lb_vip": vip} if vip else {}), **shared}
    return entries + [(name, {**data, "ssh_hostname": address}, {"registry_lb"}) for name, address in lbs]


def test_two_load_balancers_share_an_address_that_clients_use():
    settings = validate_hosts(two_lbs(), check_files=False)
    assert {s.registry_address for s in settings.values()} == {"10.0.0.200:5000"}
    assert settings["reg1"].lb_stats_urls == ("http://10.0.0.101:8404/stats", "http://10.0.0.102:8404/stats")
    # A name for it (the operator's DNS) is what clients use then; the certificate covers both.
    named = validate_hosts(two_lbs(registry_host="registry.lan"), check_files=False)
    assert named["c1"].registry_address == "registry.lan:5000"
    assert {"registry.lan", "10.0.0.200"} <= set(named["reg1"].tls_names)
    assert packages_to_check(settings["lb2"]) == ["haproxy", "curl", "keepalived", "redis-server"]


@pytest.mark.parametrize("entries,expected", [
    (two_lbs(vip=""), "2 hosts in 'registry_lb' (lb1, lb2) need one address for clients: set registry_lb_vip"),
    (two_lbs(lbs=(("lb1", "10.0.0.101"), ("lb2", "lb2.lan"))),
     "host 'lb2' in 'registry_lb': keepalived's peers are IPv4 addresses, and its address is 'lb2.lan'"),
    (two_lbs(vip="10.0.0.101"), "host 'lb1' in 'registry_lb' has registry_lb_vip's address '10.0.0.101' as its own"),
    (two_lbs(vip="10.0.0.300"), "registry_lb_vip='10.0.0.300' is not an IPv4 address"),
    ([*hosts(lb=(), shared={"registry_host": "registry.lan", "registry_lb_vip": "10.0.0.200"})],
     "registry_lb_vip='10.0.0.200' without a host in 'registry_lb'"),
    ([*two_lbs()[:-1], ("lb2", {**S3, "registry_lb_vip": "10.0.0.201/24", "ssh_hostname": "10.0.0.102"},
                        {"registry_lb"})], "hosts disagree on the registry address (10.0.0.200:5000, 10.0.0.201:5000)"),
    ([*two_lbs(registry_host="registry.lan")[:-1],
      ("lb2", {**S3, "registry_host": "registry.lan", "registry_lb_vip": "10.0.0.201/24", "ssh_hostname": "10.0.0.102"},
       {"registry_lb"})], "hosts disagree on registry_lb_vip"),
])
def test_load_balancers_that_could_not_share_an_address_are_refused(entries, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        validate_hosts(entries, check_files=False)


ADDRESSES = ["1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever",
             "5: ens3@if9    inet 10.0.0.102/24 brd 10.0.0.255 scope global ens3\\       valid_lft forever"]


def test_keepalived_sends_from_its_own_address_to_the_others_on_the_interface_holding_it():
    lb2 = validate_hosts(two_lbs(), check_files=False)["lb2"]
    config = load_balancer.keepalived_config(lb2, ADDRESSES)
    assert "    interface ens3\n" in config and "unicast_src_ip 10.0.0.102\n" in config
    assert re.search(r"unicast_peer \{\s+10\.0\.0\.101\s+\}", config)
    assert "10.0.0.200/24 dev ens3" in config and "virtual_router_id 51" in config
    # The first in the inventory takes the address first; nobody takes it back from another.
    lb1 = validate_hosts(two_lbs(lbs=(("lb1", "10.0.0.102"), ("lb2", "10.0.0.101"))), check_files=False)["lb1"]
    assert "priority 200" in load_balancer.keepalived_config(lb1, ADDRESSES) and "priority 199" in config
    assert "nopreempt" in config and "state BACKUP" in config
    with pytest.raises(load_balancer.NoInterface, match="no interface holds 10.0.0.102"):
        load_balancer.keepalived_config(lb2, ADDRESSES[:1])
    assert "/32 dev ens3" in load_balancer.keepalived_config(
        validate_hosts(two_lbs(vip="10.0.0.200"), check_files=False)["lb2"], ADDRESSES)


def lb_state(settings, drift=()):
    """A load balancer's HostState as a deploy left it, but for `drift`."""
    from regdeploy.host_state import HostState
    from regdeploy.pki import sha256

    files = {"haproxy_cfg": f"{sha256(load_balancer.haproxy_config(settings))} 644 root",
             "keepalived_conf": f"{sha256(load_balancer.keepalived_config(settings, ADDRESSES))} 644 root",
             "cache_conf": f"{sha256(load_balancer.cache_config())} 644 root",
             **{f.label: f"{sha256(f.content)} {f.mode} root" for f in load_balancer.cache_files(settings)}}
    units = set(load_balancer.services(settings))
    state = HostState(packages={p: "installed" not in drift for p in load_balancer.packages(settings)},
                      files={k: v for k, v in files.items() if f"{k} edited" not in drift},
                      running={u for u in units if f"{u} stopped" not in drift},
                      enabled_units={u for u in units if f"{u} disabled" not in drift},
                      lines={"addresses": ADDRESSES})
    return state


@pytest.mark.parametrize("drift,expected", [
    ((), {"redis-server": (), "haproxy": (), "keepalived": ()}),
    (("haproxy.service stopped",), {"redis-server": (), "haproxy": ("haproxy is not running",), "keepalived": ()}),
    (("keepalived.service disabled",),
     {"redis-server": (), "haproxy": (), "keepalived": ("keepalived does not start at boot",)}),
    (("haproxy_cfg edited", "keepalived.service stopped"),
     {"redis-server": (), "haproxy": ("/etc/haproxy/haproxy.cfg differs from the inventory's",),
      "keepalived": ("keepalived is not running",)}),
    (("installed",), {"redis-server": ("redis-server is being installed",), "haproxy": ("haproxy is being installed",),
                      "keepalived": ("keepalived is being installed",)}),
    # registry_lb_cache: redis stopped, its file edited, its password changed (a new http.secret).
    (("redis-server.service stopped", "cache_conf edited"),
     {"redis-server": ("/etc/redis/redis.conf differs from the inventory's", "redis-server is not running"),
      "haproxy": (), "keepalived": ()}),
    (("cache_auth edited",), {"redis-server": ("/etc/redis/regdeploy-auth.conf changed",), "haproxy": (),
                              "keepalived": ()}),
])
def test_a_load_balancer_stopped_disabled_or_edited_by_hand_is_put_back(drift, expected):
    lb2 = validate_hosts(two_lbs(), check_files=False)["lb2"]
    plan = load_balancer.lb_plan(lb2, lb_state(lb2, drift))
    assert plan.tls == plan.stale == ()  # no registry_tls
    assert {step.service: step.reasons for step in plan.steps} == expected
    assert plan.missing == (("haproxy", "curl", "keepalived", "redis-server") if "installed" in drift else ())
    assert [f.label for f in plan.cache] == (["cache_auth"] if "cache_auth edited" in drift else [])


def test_a_configuration_its_service_refuses_changes_nothing(tmp_path):
    """The apply script against stand-ins: keepalived refuses the file (exit 5), so the old one stays
    and no service is touched; a passed check (keepalived 2.2's SIGTERM to itself, 143) goes on."""
    step = lb2_step("keepalived", "keepalived_conf edited")
    for code, changed in ((5, False), (143, True)):
        result, path, calls = apply_step(tmp_path, step, f"keepalived() {{ echo keepalived >> {tmp_path}/calls; "
                                                         f"return {code}; }}\n")
        assert (result.returncode == 0) is changed, result.stderr
        assert (path.read_text() == step.content) is changed
        assert ("systemctl reload-or-restart keepalived" in calls) is changed
        assert not (tmp_path / "keepalived.conf.regdeploy-new").exists()
        if not changed:
            assert "keepalived refused the new configuration" in result.stderr


@pytest.mark.parametrize("groups,storage,former,expected", [
    ({"docker_clients"}, "s3", True, "stop"),  # a replica moved to the clients: its registry stops
    ({"registry_lb"}, "s3", True, "stop"),  # or made a load balancer
    ({"docker_clients"}, "s3", False, None),  # a client that never ran one
    ({"docker_clients"}, "filesystem", True, "keep"),  # images on its own disk: served nowhere else
    ({"registry_servers"}, "s3", True, None),  # still a replica
])
def test_a_host_taken_out_of_the_replicas_stops_its_registry_and_keeps_its_data(groups, storage, former, expected):
    from regdeploy import retire
    from regdeploy.host_state import HostState

    data = {**S3, "registry_storage": storage}
    entries = (hosts(shared=data, lb=() if "registry_lb" in groups else ("lb1",)) if storage == "s3"
               else [("reg1", data, {"registry_servers"})]) + [
        ("old", {**data, "ssh_hostname": "10.0.0.9"}, groups)]
    settings = validate_hosts(entries, check_files=False)["old"]
    assert (retire.LABEL in {c[1] for c in fact_checks(settings)}) is ("registry_servers" not in groups)
    state = HostState(files={retire.LABEL: "0 600 root"} if former else {})
    decision = retire.retirement(settings, state)
    assert (None if decision is None else "stop" if decision.stop else "keep") == expected
    if expected == "stop":
        assert "container 'registry' stops and stays" in decision.message
        assert "/etc/regdeploy/config.yml becomes /etc/regdeploy/config.yml.regdeploy-retired" in decision.message
    if expected == "keep":
        assert "keeps running, since the images on its disk are served nowhere else" in decision.message


@pytest.mark.parametrize("update_fails", [False, True])
def test_retiring_stops_the_container_only_once_it_cannot_restart_and_renames_the_config_last(tmp_path, update_fails):
    """retire-registry.sh against a stand-in docker: the restart policy goes to no before the stop;
    if that fails, nothing is stopped and config.yml stays (the next run tries again)."""
    import subprocess

    from regdeploy import retire
    from regdeploy.rendering import render

    settings = validate_hosts(hosts(shared={"registry_config_dir": str(tmp_path)}), check_files=False)["c1"]
    (tmp_path / "config.yml").write_text("version: 0.1\n")
    calls = tmp_path / "calls"
    stand_ins = (f"docker() {{ echo \"docker $*\" >> {calls}; "
                 f"case $1 in update) return {int(update_fails)} ;; esac; }}\n"
                 f"systemctl() {{ echo \"systemctl $*\" >> {calls}; }}\n")
    script = render("retire-registry.sh.j2", **retire.retire_script_args(settings))
    result = subprocess.run(["sh", "-c", stand_ins + script], capture_output=True, text=True, timeout=30,
                            env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    done = calls.read_text().splitlines()
    assert done[:2] == ["docker container inspect registry", "docker update --restart=no registry"]
    if update_fails:
        assert result.returncode == 1 and "it was not stopped" in result.stderr
        assert len(done) == 2 and (tmp_path / "config.yml").exists()
    else:
        assert result.returncode == 0, result.stderr
        assert done[2] == "docker stop -t 30 registry"
        assert not (tmp_path / "config.yml").exists()
        assert (tmp_path / "config.yml.regdeploy-retired").read_text() == "version: 0.1\n"



def test_tls_ends_at_haproxy_and_starts_again_to_the_replicas_verified():
    """registry_tls: haproxy holds the certificate and key (0600), ends TLS in HTTP mode (so a request a
    dead replica never answered is sent again), and verifies each replica against the CA file."""
    from regdeploy import pki
    from regdeploy.host_state import HostState

    lb = validate_hosts(hosts(shared={"registry_tls": True, "registry_host": "registry.lan"}), check_files=False)["lb1"]
    config = load_balancer.haproxy_config(lb)
    assert f"bind :5000 ssl crt {load_balancer.PEM_PATH}\n" in config and "mode tcp\n" not in config.split("frontend token")[0]
    assert "retry-on conn-failure empty-response response-timeout 503" in config
    assert f"server reg1 10.0.0.1:5000 check inter 500ms fall 2 rise 2 ssl verify required ca-file {load_balancer.CA_PATH} " \
           "verifyhost registry.lan\n" in config
    # An address as registry_host: the chain is verified, no name (haproxy checks names only).
    by_address = validate_hosts(hosts(shared={"registry_tls": True, "registry_host": "10.0.0.200"}),
                                check_files=False)["lb1"]
    assert "verifyhost" not in load_balancer.haproxy_config(by_address)
    material = pki.TlsMaterial(cert_pem="CERT\n", key_pem="KEY\n", ca_pem="CA\n", generated=True)
    files = {f.label: f for f in load_balancer.tls_files(material)}
    assert (files["lb_pem"].content, files["lb_pem"].mode, files["lb_pem"].secret) == ("CERT\nKEY\n", "600", True)
    assert (files["lb_ca"].content, files["lb_ca"].mode, files["lb_ca"].secret) == ("CA\n", "644", False)
    assert {c[1] for c in fact_checks(lb)} >= {"lb_pem", "lb_ca"}
    # A new certificate (a rotation) reloads haproxy, whose files are otherwise as wanted.
    from regdeploy.pki import sha256

    current = HostState(packages={p: True for p in load_balancer.packages(lb)},
                        files={"haproxy_cfg": f"{sha256(config)} 644 root", "lb_pem": f"{sha256('OLD')} 600 root",
                               "lb_ca": f"{sha256(material.ca_pem)} 644 root"},
                        running={"haproxy.service"}, enabled_units={"haproxy.service"})
    plan = load_balancer.lb_plan(lb, current, material)
    assert [f.label for f in plan.tls] == ["lb_pem"] and plan.stale == ()
    assert next(s for s in plan.steps if s.service == "haproxy").reasons == (f"{load_balancer.PEM_PATH} changed",)
    # TLS off again: haproxy's key and CA are removed once its new configuration no longer names them.
    plain = validate_hosts(hosts(shared={"registry_host": "registry.lan"}), check_files=False)["lb1"]
    assert load_balancer.lb_plan(plain, current).stale == (load_balancer.PEM_PATH, load_balancer.CA_PATH)


def test_the_replicas_share_a_cache_on_the_load_balancers_unless_told_not_to():
    """registry_lb_cache: redis on every load balancer, reached at the shared address (else the first load
    balancer's); one replica, or registry_lb_cache=false, has none."""
    shared = validate_hosts(two_lbs(), check_files=False)
    assert {s.blob_cache_address for s in shared.values()} == {"10.0.0.200:6379"}
    assert yaml.safe_load(registry_config(shared["reg1"]))["redis"]["addr"] == "10.0.0.200:6379"
    lb2 = shared["lb2"]
    assert {c[1] for c in fact_checks(lb2)} >= {"cache_conf", "cache_auth", "cache_flush", "redis-server.service"}
    # keepalived empties this host's cache when it takes the address or leaves it, as root (the password
    # is root's).
    keepalived = load_balancer.keepalived_config(lb2, ADDRESSES)
    for state in ("master", "backup", "fault"):
        assert f'notify_{state} "{load_balancer.CACHE_FLUSH_PATH}" root' in keepalived
    files = {f.label: f for f in load_balancer.cache_files(lb2)}
    auth = files["cache_auth"]
    assert (auth.path, auth.mode, auth.group, auth.secret) == (load_balancer.CACHE_AUTH_PATH, "640", "redis", True)
    assert auth.content == f"requirepass {security.cache_password(lb2)}\n"
    assert files["cache_flush"].mode == "755" and not files["cache_flush"].secret
    config = load_balancer.cache_config()
    assert f"include {load_balancer.CACHE_AUTH_PATH}\n" in config and 'save ""\n' in config
    assert "maxmemory-policy allkeys-lru\n" in config and "requirepass" not in config
    # The order a deploy applies them: redis before the replicas could use it, keepalived last.
    assert [s.service for s in load_balancer.lb_plan(lb2, lb_state(lb2)).steps] == ["redis-server", "haproxy",
                                                                                   "keepalived"]
    for off in (validate_hosts(two_lbs(registry_lb_cache=False), check_files=False),
                validate_hosts(hosts(servers=("reg1",)), check_files=False)):
        assert {s.blob_cache_address for s in off.values()} == {""}
        server = next(s for s in off.values() if s.is_server)
        assert "redis" not in yaml.safe_load(registry_config(server)) and "blobdescriptor: redis" not in \
            registry_config(server)
        lb = next(s for s in off.values() if s.is_lb)
        assert "redis-server" not in load_balancer.packages(lb) and load_balancer.cache_files(lb) == ()
        assert "cache_conf" not in {c[1] for c in fact_checks(lb)}
    assert "notify_master" not in load_balancer.keepalived_config(
        validate_hosts(two_lbs(registry_lb_cache=False), check_files=False)["lb2"], ADDRESSES)


@pytest.mark.parametrize("reply,password,ok", [("OK", "p" * 64, True), ("NOAUTH Authentication required.", "p" * 64, False),
                                               ("Could not connect to Redis at 127.0.0.1:6379", "p" * 64, False),
                                               ("OK", "", False)])
def test_the_flush_script_says_ok_only_when_redis_emptied_the_cache(tmp_path, reply, password, ok):
    """The script keepalived and `regdeploy gc` run on a load balancer, against a stand-in redis-cli that
    records its password (from the environment, never its command line) and arguments."""
    import subprocess
    from regdeploy.rendering import render

    auth = tmp_path / "auth.conf"
    auth.write_text(f"requirepass {password}\n" if password else "# nothing\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "redis-cli").write_text(f'#!/bin/sh\necho "$REDISCLI_AUTH $*" >> {tmp_path}/calls\necho "{reply}"\n')
    (bin_dir / "redis-cli").chmod(0o755)
    script = render("flush-blob-cache.sh.j2", auth=str(auth), port=6379)
    result = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30,
                            env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert (result.returncode == 0) is ok, result.stderr
    calls = (tmp_path / "calls").read_text() if (tmp_path / "calls").exists() else ""
    if password:
        assert calls == f"{password} -h 127.0.0.1 -p 6379 FLUSHALL\n"
    else:
        assert calls == "" and "no password" in result.stderr
    if not ok and password:
        assert f"was not emptied: {reply}" in result.stderr


def test_redis_has_no_check_of_its_file_so_its_start_is_the_check(tmp_path):
    """The apply script for redis: the file is written, redis restarted, and a redis that does not run
    after it fails the step (stand-in systemctl)."""
    step = lb2_step("redis-server", "cache_conf edited")
    assert step.check == () and step.reasons == ("/etc/redis/redis.conf differs from the inventory's",)
    for active, ok in ((0, True), (3, False)):
        result, path, calls = apply_step(tmp_path, step, "", is_active=active)
        assert (result.returncode == 0) is ok, result.stderr
        assert path.read_text() == step.content
        assert "systemctl reload-or-restart redis-server" in calls
        assert ok or "redis-server is not running" in result.stderr


def lb2_step(service: str, drift: str):
    """lb2's step for `service` when `drift` happened to its files."""
    lb2 = validate_hosts(two_lbs(), check_files=False)["lb2"]
    return next(s for s in load_balancer.lb_plan(lb2, lb_state(lb2, (drift,))).steps if s.service == service)


def apply_step(tmp_path, step, stand_ins: str, is_active: int = 0):
    """The apply script for `step`, run against stand-ins (systemctl, chown, and `stand_ins`) on an old
    file in tmp_path: (result, the file's path, the calls made)."""
    import subprocess
    from regdeploy.rendering import render

    path = tmp_path / step.path.rsplit("/", 1)[-1]
    path.write_text("old\n")
    calls = tmp_path / "calls"
    calls.write_text("")
    script = render("apply-lb-config.sh.j2", path=str(path), content=step.content, service=step.service,
                    check=step.check, check_passes=step.check_passes, wait_url=step.wait_url)
    stand_ins += (f"systemctl() {{ echo \"systemctl $*\" >> {calls}; "
                  f"case \"$1\" in is-active) return {is_active};; esac; }}\nchown() {{ :; }}\n")
    result = subprocess.run(["sh", "-c", stand_ins + script], capture_output=True, text=True, timeout=30)
    return result, path, calls.read_text()


# --- registry_lb_mode=ipvs ------------------------------------------------------------------------

def ipvs_lbs(**shared):
    """two_lbs with IPVS: the replicas at IPv4 addresses on the load balancers' network."""
    entries = two_lbs(registry_lb_mode="ipvs", **shared)
    addresses = {"reg1": "10.0.0.11", "reg2": "10.0.0.12", "reg3": "10.0.0.13"}
    return [(name, {**data, "ssh_hostname": addresses[name]} if name in addresses else data, groups)
            for name, data, groups in entries]


def test_with_ipvs_keepalived_forwards_every_connection_to_a_checked_replica_and_copies_it():
    settings = validate_hosts(ipvs_lbs(), check_files=False)
    lb2 = settings["lb2"]
    config = load_balancer.keepalived_config(lb2, ADDRESSES)
    assert "lvs_sync_daemon ens3 registry id 51\n" in config
    assert "haproxy" not in config  # no haproxy, nothing tracks it
    server = config[config.index("virtual_server 10.0.0.200 5000 {"):]
    assert "lb_kind DR" in server
    # Every load balancer picks the same replica for a connection: the one taking the address carries
    # on the connections the holder had not synced yet.
    assert "lb_algo sh\n    sh-port\n    sh-fallback\n" in server
    for replica in ("10.0.0.11", "10.0.0.12", "10.0.0.13"):
        assert f"real_server {replica} 5000 {{" in server
        assert f'misc_path "{load_balancer.REPLICA_CHECK_PATH} http {replica} 5000"' in server
    assert server.count("misc_dynamic") == 3
    # No haproxy on the load balancers; the replicas reach the cache at the first one's own address
    # (each holds the shared one itself).
    assert load_balancer.packages(lb2) == ("keepalived", "ipvsadm", "curl", "redis-server")
    assert load_balancer.services(lb2) == ("redis-server.service", "keepalived.service")
    assert settings["reg1"].blob_cache_address == "10.0.0.101:6379"
    assert settings["reg1"].lb_stats_urls == ()
    assert load_balancer.replica_drain(settings["reg1"], 5000) == {
        "sources": ["10.0.0.101", "10.0.0.102"], "ports": [5000], "container_port": 5000, "notice": 4}
    # TLS passes through to the replicas (checked by a connection, as the token service's port is).
    access = validate_hosts(ipvs_lbs(registry_tls=True, registry_auth=True, registry_users=["ci"],
                                     registry_access=["ci * pull,push"]), check_files=False)["lb2"]
    config = load_balancer.keepalived_config(access, ADDRESSES)
    token = access.registry_token_port
    assert f"virtual_server 10.0.0.200 {token} {{" in config
    assert f'regdeploy-replica-check tcp 10.0.0.11 5000"' in config
    assert f'regdeploy-replica-check tcp 10.0.0.11 {token}"' in config
    assert load_balancer.lb_plan(access, HostState(lines={"addresses": ADDRESSES})).tls == ()


@pytest.mark.parametrize("entries,expected", [
    (two_lbs(vip="", registry_lb_mode="ipvs")[:-1],
     "registry_lb_mode='ipvs' needs registry_lb_vip: the replicas hold that address on their loopback"),
    ([(name, {**data, "ssh_hostname": "reg1.lan"} if name == "reg1" else data, groups)
      for name, data, groups in ipvs_lbs()],
     "host 'reg1': with registry_lb_mode='ipvs' the load balancers forward to each replica's IPv4 address, and its "
     "address is 'reg1.lan'"),
    (two_lbs(registry_lb_mode="direct"), "registry_lb_mode='direct' is unknown; use one of haproxy, ipvs"),
])
def test_ipvs_without_an_address_to_share_or_a_replica_it_can_reach_is_refused(entries, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        validate_hosts(entries, check_files=False)


def ipvs_lb_state(settings, drift=()):
    from regdeploy.pki import sha256

    state = lb_state(settings, drift)
    state.files.pop("haproxy_cfg")
    state.files.update({f.label: f"{sha256(f.content)} {f.mode} root" for f in load_balancer.ipvs_files(settings)
                        if f"{f.label} edited" not in drift})
    state.lines["ipvs_sysctls"] = ["0" if f"{name.rsplit('.', 1)[1]}=0" in drift else "1"
                                   for name, _ in load_balancer.IPVS_SYSCTLS]
    return state


@pytest.mark.parametrize("drift,labels,kernel,keepalived", [
    ((), [], (), ()),
    (("ipvs_check edited",), ["ipvs_check"], (), ()),
    (("ipvs_sysctl edited",), ["ipvs_sysctl"], ("/etc/sysctl.d/60-regdeploy-ipvs.conf changed",), ()),
    # After a reboot without the module loaded at boot, or a hand's sysctl: set it again.
    (("expire_nodest_conn=0",), [], ("the kernel's net.ipv4.vs.expire_nodest_conn=1, net.ipv4.vs.sloppy_tcp=1 is not set",), ()),
    (("sloppy_tcp=0",), [], ("the kernel's net.ipv4.vs.expire_nodest_conn=1, net.ipv4.vs.sloppy_tcp=1 is not set",), ()),
    (("keepalived.service stopped",), [], (), ("keepalived is not running",)),
])
def test_an_ipvs_load_balancer_gets_back_its_check_its_kernel_setting_and_keepalived(drift, labels, kernel, keepalived):
    lb2 = validate_hosts(ipvs_lbs(), check_files=False)["lb2"]
    plan = load_balancer.lb_plan(lb2, ipvs_lb_state(lb2, drift))
    assert [f.label for f in plan.ipvs] == labels and plan.kernel == kernel
    assert {step.service: step.reasons for step in plan.steps} == {"redis-server": (), "keepalived": keepalived}
    assert ("file", "haproxy_cfg", load_balancer.CONFIG_PATH) not in load_balancer.fact_checks(lb2)


def replica_state(settings, loopback=("10.0.0.200",), unit_address="10.0.0.200", arp=("1", "2"), enabled=True,
                  edited=()):
    from regdeploy.pki import sha256

    unit = load_balancer.replica_unit(unit_address)
    sysctl = load_balancer.sysctl_file(load_balancer.REPLICA_SYSCTLS,
                                       "only the load balancer holding registry_lb_vip answers ARP for it")
    files = {"lb_address_unit": f"{sha256(unit)} 644 root", "lb_address_sysctl": f"{sha256(sysctl)} 644 root"}
    return HostState(files={k: v for k, v in files.items() if k not in edited} if unit_address else {},
                     lines={"lb_address_unit_lines": unit.splitlines() if unit_address else [],
                            "loopback": ["1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever"]
                            + [f"1: lo    inet {a}/32 scope global lo\\       valid_lft forever" for a in loopback],
                            "arp": list(arp)},
                     enabled_units={load_balancer.REPLICA_UNIT} if enabled else set())


@pytest.mark.parametrize("mode,state,files,reasons,remove,retire", [
    # A new replica: the ARP settings, the unit, then the address.
    ("ipvs", dict(loopback=(), unit_address="", arp=("0", "0"), enabled=False),
     ["lb_address_sysctl", "lb_address_unit"],
     ("/etc/sysctl.d/60-regdeploy-lb-address.conf, /etc/systemd/system/regdeploy-lb-address.service differ from "
      "the inventory's", "the loopback does not hold 10.0.0.200",
      "the ARP settings are not net.ipv4.conf.all.arp_ignore=1, net.ipv4.conf.all.arp_announce=2",
      "regdeploy-lb-address.service does not start at boot"), (), False),
    ("ipvs", {}, [], (), (), False),
    # The address taken off by hand (or a reboot without the unit): back.
    ("ipvs", dict(loopback=()), [], ("the loopback does not hold 10.0.0.200",), (), False),
    ("ipvs", dict(arp=("0", "2")), [], ("the ARP settings are not net.ipv4.conf.all.arp_ignore=1, "
                                        "net.ipv4.conf.all.arp_announce=2",), (), False),
    # registry_lb_vip moved: the old one goes, the new one comes.
    ("ipvs", dict(loopback=("10.0.0.199",), unit_address="10.0.0.199"), ["lb_address_unit"],
     ("/etc/systemd/system/regdeploy-lb-address.service differ from the inventory's",
      "the loopback does not hold 10.0.0.200"), ("10.0.0.199",), False),
    # Back to haproxy: the replica holds no shared address any more, and the unit goes.
    ("haproxy", {}, [], (), ("10.0.0.200",), True),
    ("haproxy", dict(loopback=()), [], (), (), True),
    ("haproxy", dict(loopback=(), unit_address=""), [], (), (), False),
])
def test_a_replica_behind_ipvs_holds_the_shared_address_on_its_loopback_and_only_then(
        mode, state, files, reasons, remove, retire):
    reg1 = validate_hosts(ipvs_lbs() if mode == "ipvs" else two_lbs(), check_files=False)["reg1"]
    # A client (or a former replica) never holds it: its pulls would go to itself.
    c1 = validate_hosts(ipvs_lbs(), check_files=False)["c1"]
    held = load_balancer.replica_address_plan(c1, replica_state(c1))
    assert (held.files, held.apply, held.remove, held.retire) == ((), "", ("10.0.0.200",), True)
    plan = load_balancer.replica_address_plan(reg1, replica_state(reg1, **state))
    assert [f.label for f in plan.files] == files
    assert plan.reasons == reasons and plan.remove == remove and plan.retire == retire
    if reasons:  # the ARP settings before the address, and both again at boot
        assert plan.apply.index("sysctl -q -p") < plan.apply.index("ip address replace 10.0.0.200/32 dev lo")
    else:
        assert plan.apply == ""


def run_replica_check(port: int) -> int:
    import subprocess
    from regdeploy.rendering import render

    return subprocess.run(["bash", "-c", render("replica-check.sh.j2"), "replica-check", "http", "127.0.0.1", str(port)],
                          capture_output=True, timeout=30).returncode


def test_keepalived_weighs_a_replica_by_whether_it_answers_refuses_or_says_nothing():
    """The check against real sockets on the loopback: a registry that answers GET /v2/ (weight 1, exit
    3), a port refused as a drained replica refuses the load balancers (weight 0, exit 2), a replica
    that accepts and never answers, as a hung one (taken out, exit 1)."""
    import http.server
    import socket
    import threading

    class V2(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(401 if self.path == "/v2/" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    answering = http.server.HTTPServer(("127.0.0.1", 0), V2)
    threading.Thread(target=answering.serve_forever, daemon=True).start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts (the kernel does), never answers
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]
    closed.close()
    try:
        assert run_replica_check(answering.server_address[1]) == 3
        assert run_replica_check(refused_port) == 2
        assert run_replica_check(silent.getsockname()[1]) == 1
    finally:
        answering.shutdown()
        silent.close()


@pytest.fixture
def ipvs_replica_part(tmp_path):
    """lb-replica.sh's ipvs functions with a stand-in iptables keeping its rules in a file (`rules`,
    every call in `rules.calls`); REFUSED and COUNTED name the load balancers whose checks its REJECT
    refused and its counting rules counted, FAIL makes it refuse new rules. Returns (run, rules)."""
    import os
    import subprocess
    from regdeploy.rendering import render

    reg1 = validate_hosts(ipvs_lbs(), check_files=False)["reg1"]
    rules = tmp_path / "rules"
    rules.write_text("")
    stand_in = f"""
iptables() {{
    [ "$1" = -w ] && shift
    echo "$*" >> {rules}.calls
    case "$1" in
        -C) shift; grep -qxF -- "$*" {rules} ;;
        -I) shift; [ -z "${{FAIL:-}}" ] && echo "$*" >> {rules} ;;
        -D) shift; grep -vxF -- "$*" {rules} > {rules}.new; mv {rules}.new {rules} ;;
        -L) return 0 ;;
        -S) if [ "$2" = INPUT ]; then
                for s in ${{REFUSED:-}}; do
                    echo "-A INPUT -s $s/32 -p tcp -m tcp --dport 5000 -c 3 180 -j REJECT --reject-with tcp-reset"
                done
            else
                for s in ${{COUNTED:-}}; do for port in ${{COUNTED_PORTS:-5000}}; do
                    echo "-A DOCKER-USER -s $s/32 -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m conntrack" \
                         "--ctorigdstport $port -m comment --comment regdeploy-lb-check -c 2 120"
                done; done
            fi ;;
    esac
}}
sleep() {{ echo "sleep $1" >> {rules}.sleeps; }}
say() {{ :; }}
name=registry
"""
    part = render("lb-replica.sh.j2", lb_ipvs=load_balancer.replica_drain(reg1, 5000), lb_stats_urls=(),
                  lb_server="reg1", lb_backend=load_balancer.LB_BACKEND, drain_seconds=1, timeout=5)

    def run(calls, **env):
        return subprocess.run(["sh", "-c", stand_in + part + calls], capture_output=True, text=True, timeout=30,
                              env={**os.environ, **env})
    return run, rules


def test_a_replica_drains_behind_ipvs_by_rejecting_the_load_balancers_checks_only(ipvs_replica_part, tmp_path):
    """Drain rejects each load balancer on each port (INPUT and DOCKER-USER), twice adds nothing, ready
    removes every one, and a failing iptables makes drain fail."""
    run, rules = ipvs_replica_part

    assert run("lb_set drain && lb_set drain && lb_status").stdout.split() == ["drained"]
    # lb_drain waits until each load balancer's check was refused (the rules' counters), not a set time.
    drained = run("lb_drain", REFUSED="10.0.0.101 10.0.0.102")
    assert drained.returncode == 0 and (tmp_path / "rules.sleeps").read_text().splitlines()[0] == "sleep 1"
    (tmp_path / "rules.sleeps").unlink()
    waited = run("say() { echo \"$*\" >&2; }; lb_drain", REFUSED="10.0.0.101")
    assert "the load balancer 10.0.0.102 tried no check in 20 s" in waited.stderr
    assert (tmp_path / "rules.sleeps").read_text().count("sleep 0.2") == 100
    lines = rules.read_text().splitlines()
    assert sorted(lines) == sorted(
        [f"INPUT -s {lb} -p tcp --dport 5000 -j REJECT --reject-with tcp-reset" for lb in ("10.0.0.101", "10.0.0.102")]
        + [f"DOCKER-USER -s {lb} -p tcp -m conntrack --ctorigdstport 5000 -j REJECT --reject-with tcp-reset"
           for lb in ("10.0.0.101", "10.0.0.102")])
    assert run("lb_set ready && lb_status").stdout.split() == ["checked"]
    assert rules.read_text() == ""
    failed = run("lb_set drain", FAIL="1")
    assert failed.returncode != 0 and "could not reject the load balancers' checks of reg1" in failed.stderr


COUNT_RULES = sorted(
    [f"INPUT -s {lb} -p tcp --dport 5000 --syn -m comment --comment regdeploy-lb-check"
     for lb in ("10.0.0.101", "10.0.0.102")]
    + [f"DOCKER-USER -s {lb} -p tcp -m conntrack --ctorigdstport 5000 --syn -m comment --comment regdeploy-lb-check"
       for lb in ("10.0.0.101", "10.0.0.102")])


def test_a_replica_back_behind_ipvs_waits_until_each_load_balancer_checked_it(ipvs_replica_part, tmp_path):
    """lb_wait_up counts each load balancer's checks from 0 (rules an interrupted run left go first),
    waits for one from each, then 1 s for its answer, and removes its counting rules; one that opens
    none in 20 s is said and not waited for longer; rules it cannot add make it fail."""
    run, rules = ipvs_replica_part
    rules.write_text(COUNT_RULES[0] + "\n")  # left by an interrupted run, its counter not 0
    up = run("lb_rules any COUNT && echo counting; lb_wait_up", COUNTED="10.0.0.101 10.0.0.102")
    assert up.returncode == 0 and up.stdout.split() == ["counting"], up.stderr
    calls = (tmp_path / "rules.calls").read_text().splitlines()
    assert calls.index(f"-D {COUNT_RULES[0]}") < calls.index(f"-I {COUNT_RULES[0]}")
    assert sorted(line.removeprefix("-I ") for line in calls if line.startswith("-I ")) == COUNT_RULES
    assert (tmp_path / "rules.sleeps").read_text().splitlines() == ["sleep 1"]
    assert rules.read_text() == ""  # nothing counts any more
    (tmp_path / "rules.sleeps").unlink()
    late = run("say() { echo \"$*\" >&2; }; lb_wait_up", COUNTED="10.0.0.101")
    assert late.returncode == 0 and "the load balancer 10.0.0.102 opened no check in 20 s" in late.stderr
    assert (tmp_path / "rules.sleeps").read_text().count("sleep 0.2") == 100
    assert rules.read_text() == ""
    failed = run("lb_wait_up", FAIL="1")
    assert failed.returncode != 0 and "could not count the load balancers' checks of reg1" in failed.stderr
    # With the token service's port too, a load balancer counts once each port's check came.
    ports = 'lb_ports="5000 5002"; lb_counted regdeploy-lb-check 10.0.0.101; lb_counted "-j REJECT" 10.0.0.101'
    assert run(ports, COUNTED="10.0.0.101", REFUSED="10.0.0.101").stdout.split() == ["0", "0"]
    assert run(ports, COUNTED="10.0.0.101", COUNTED_PORTS="5000 5002").stdout.split() == ["2", "0"]
