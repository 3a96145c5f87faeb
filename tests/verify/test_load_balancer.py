"""The registry_lb host (several replicas): haproxy runs the configuration regdeploy renders, sends
to every replica, and clients reach the registry through it. Not generated without a registry_lb host."""

import csv
import io

from regdeploy import load_balancer


def test_haproxy_runs_and_starts_at_boot(access, lb_name):
    haproxy = access.host(lb_name).service("haproxy")
    assert haproxy.is_running
    assert haproxy.is_enabled


def test_haproxy_runs_the_configuration_regdeploy_renders(access, fleet, lb_name):
    file = access.host(lb_name).file(load_balancer.CONFIG_PATH)
    assert (file.user, file.mode) == ("root", 0o644)
    assert file.content_string == load_balancer.haproxy_config(fleet.lb.settings)


def test_every_replica_is_up_behind_the_load_balancer(access, fleet, lb_name):
    settings = fleet.lb.settings
    page = access.host(lb_name).check_output(f"curl -fsS 'http://127.0.0.1:{settings.registry_lb_stats_port}/stats;csv'")
    rows = list(csv.reader(io.StringIO(page.lstrip("# "))))
    header = rows[0]
    status = {row[1]: row[header.index("status")] for row in rows[1:]
              if row and row[0] == load_balancer.LB_BACKEND and row[1] not in ("BACKEND", "FRONTEND")}
    assert status == {load_balancer.server_name(name): "UP" for name, _ in settings.replicas}


def test_the_registry_answers_through_the_load_balancer(access, fleet, lb_name):
    settings = fleet.lb.settings
    scheme = "https" if settings.registry_tls else "http"
    options = "-k" if settings.registry_tls else ""
    status = access.host(lb_name).check_output(
        f"curl -s {options} -o /dev/null -w '%{{http_code}}' {scheme}://127.0.0.1:{settings.registry_port}/v2/")
    assert status == ("401" if settings.registry_auth else "200")
