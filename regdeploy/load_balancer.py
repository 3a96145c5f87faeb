"""The load balancer in front of several registry replicas (the `registry_lb` host): haproxy from the
distribution, its configuration rendered from the inventory's replicas, one backend named LB_BACKEND.

Health checks (GET /v2/ every CHECK_MS) take a replica out of rotation after FALL failures and back
after RISE successes; a replica being replaced waits for RISE on haproxy's status page.
"""

from __future__ import annotations

import re

from .rendering import render

LB_BACKEND = "registry_replicas"
TOKEN_BACKEND = "token_services"  # registry_access: each replica's token service, on registry_token_port
CONFIG_PATH = "/etc/haproxy/haproxy.cfg"
# haproxy, and curl for the wait on its status page after a reload.
PACKAGES = ("haproxy", "curl")
CHECK_MS = 500
FALL = 2
RISE = 2


def server_name(host_name: str) -> str:
    """haproxy's name for a replica: the inventory name, with what haproxy refuses as `_`."""
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", host_name)


def haproxy_config(settings) -> str:
    """haproxy.cfg for this inventory: every replica of `registry_servers`, at its SSH address."""
    replicas = [(server_name(name), address) for name, address in settings.replicas]
    return render("haproxy.cfg.j2", port=settings.registry_port, backend=LB_BACKEND, replicas=replicas,
                  tls=settings.registry_tls, stats_port=settings.registry_lb_stats_port,
                  check_ms=CHECK_MS, fall=FALL, rise=RISE,
                  token_port=settings.registry_token_port if settings.registry_access else 0,
                  token_backend=TOKEN_BACKEND)
