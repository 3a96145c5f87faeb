"""The registry_lb hosts (several replicas): haproxy runs the configuration regdeploy renders, sends
to every replica, and clients reach the registry through it (with registry_lb_mode=ipvs: no haproxy
runs, every replica is in each load balancer's IPVS table at weight 1, hashed by source with the
kernel settings a takeover needs, and each load balancer's check of each replica passes); with
registry_lb_vip keepalived runs its configuration on each, and exactly one holds the address; with registry_lb_cache each runs the replicas' shared cache (redis), which
answers its password only. Not generated without a registry_lb host (the cache's: without
registry_lb_cache)."""

import csv
import io
import re

from regdeploy import load_balancer


def lb_settings(fleet, lb_name):
    return next(h.settings for h in fleet.lbs if h.name == lb_name)


def test_its_services_run_and_start_at_boot(access, fleet, lb_name):
    for unit in load_balancer.services(lb_settings(fleet, lb_name)):
        service = access.host(lb_name).service(unit.removesuffix(".service"))
        assert service.is_running, unit
        assert service.is_enabled, unit


def test_haproxy_runs_the_configuration_regdeploy_renders(access, fleet, lb_name):
    if lb_settings(fleet, lb_name).ipvs:  # IPVS instead: no haproxy runs
        assert not access.host(lb_name).service("haproxy").is_running
        return
    file = access.host(lb_name).file(load_balancer.CONFIG_PATH)
    assert (file.user, file.mode) == ("root", 0o644)
    assert file.content_string == load_balancer.haproxy_config(lb_settings(fleet, lb_name))


def test_keepalived_runs_the_configuration_regdeploy_renders(access, fleet, lb_name):
    settings = lb_settings(fleet, lb_name)
    file = access.host(lb_name).file(load_balancer.KEEPALIVED_CONFIG_PATH)
    if not settings.registry_lb_vip:
        assert not file.exists  # nothing to share: regdeploy wrote none
        return
    addresses = access.host(lb_name).check_output("ip -o -4 addr show").splitlines()
    assert (file.user, file.mode) == ("root", 0o644)
    assert file.content_string == load_balancer.keepalived_config(settings, addresses)


def test_exactly_one_load_balancer_holds_the_shared_address(access, fleet, lb_name):
    settings = lb_settings(fleet, lb_name)
    if not settings.registry_lb_vip:
        assert len(fleet.lbs) == 1
        return
    holders = [h.name for h in fleet.lbs
               if f" {settings.vip_address}/" in access.host(h.name).check_output("ip -o -4 addr show")]
    assert len(holders) == 1, holders


def test_every_replica_is_up_behind_the_load_balancer(access, fleet, lb_name):
    settings = lb_settings(fleet, lb_name)
    if settings.ipvs:  # in IPVS's table (each load balancer keeps it), at weight 1
        host = access.host(lb_name)
        table = host.check_output("ipvsadm -L -n")
        for _, address in settings.replicas:
            assert re.search(rf"-> {re.escape(address)}:{settings.registry_port}\s+Route\s+1\s", table), table
        # Each load balancer picks a connection's replica by its source (address and port), and the one
        # taking the address forwards a packet of a connection it does not know: it carries on the
        # connections the holder had not synced to it yet.
        for port in load_balancer.ipvs_ports(settings):
            service = re.search(rf"TCP\s+{re.escape(settings.vip_address)}:{port} (\S+) \(([^)]*)\)", table)
            assert service and service[1] == "sh" and set(service[2].split(",")) == {"sh-fallback", "sh-port"}, \
                (port, table)
        names = [name for name, _ in load_balancer.IPVS_SYSCTLS]
        assert host.check_output(f"sysctl -n {' '.join(names)}").split() == [v for _, v in load_balancer.IPVS_SYSCTLS]
        return
    page = access.host(lb_name).check_output(f"curl -fsS 'http://127.0.0.1:{settings.registry_lb_stats_port}/stats;csv'")
    rows = list(csv.reader(io.StringIO(page.lstrip("# "))))
    header = rows[0]
    status = {row[1]: row[header.index("status")] for row in rows[1:]
              if row and row[0] == load_balancer.LB_BACKEND and row[1] not in ("BACKEND", "FRONTEND")}
    assert status == {load_balancer.server_name(name): "UP" for name, _ in settings.replicas}


def test_the_registry_answers_through_the_load_balancer(access, fleet, lb_name):
    settings = lb_settings(fleet, lb_name)
    if settings.ipvs:  # nothing answers on the load balancer itself: its check of each replica passes
        for _, address in settings.replicas:
            said = access.host(lb_name).run(f"{load_balancer.REPLICA_CHECK_PATH} "
                                            f"{'tcp' if settings.registry_tls else 'http'} {address} {settings.registry_port}")
            assert said.rc == 3, (address, said.rc, said.stderr)
        return
    scheme = "https" if settings.registry_tls else "http"
    options = "-k" if settings.registry_tls else ""
    status = access.host(lb_name).check_output(
        f"curl -s {options} -o /dev/null -w '%{{http_code}}' {scheme}://127.0.0.1:{settings.registry_port}/v2/")
    assert status == ("401" if settings.registry_auth else "200")


def test_the_shared_cache_runs_its_configuration_and_answers_its_password_only(access, cache_lb_name):
    host = access.host(cache_lb_name)
    assert host.file(load_balancer.CACHE_CONFIG_PATH).content_string == load_balancer.cache_config()
    auth = host.file(load_balancer.CACHE_AUTH_PATH)
    assert (auth.user, auth.group, auth.mode) == ("root", "redis", 0o640)
    flush = host.file(load_balancer.CACHE_FLUSH_PATH)
    assert (flush.user, flush.mode) == ("root", 0o755)
    assert access.ssh(cache_lb_name, load_balancer.cache_cli("ping")).strip() == "PONG"
    refused = access.ssh(cache_lb_name, f"redis-cli -h 127.0.0.1 -p {load_balancer.CACHE_PORT} dbsize 2>&1")
    assert "NOAUTH" in refused, refused
