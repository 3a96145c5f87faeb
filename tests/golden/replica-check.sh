#!/bin/bash
# Rendered by regdeploy (templates/replica-check.sh.j2) on a registry_lb host (registry_lb_mode=ipvs):
# keepalived's check of one replica's port (MISC_CHECK with misc_dynamic: an exit code of 2 or more
# sets the replica's weight to that code minus 2, 1 takes it out).
#   replica-check http|https|tcp ADDRESS PORT
# 3 (weight 1): it answers (an HTTP status below 500 for GET /v2/; a connection for tcp, which
#   regdeploy uses for TLS and for the token service's port).
# 2 (weight 0): its host refuses the connection: the replica is drained (regdeploy rejects the load
#   balancers' checks while it replaces it) or its registry is down; its open connections carry on.
# 1 (taken out): anything else, a host that answers nothing above all; its open connections end at
#   their next packet (expire_nodest_conn), so the clients learn it at once.
set -u
mode=$1 address=$2 port=$3
# connect: open a TCP connection to the replica's port (bash's /dev/tcp), at most 2 s.
# shellcheck disable=SC2016 # $0 and $1 are the inner shell's, given after the script
connect() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$address" "$port"; }
if [ "$mode" = tcp ]; then
    connect 2>/dev/null && exit 3
else
    # -k: a check of life, not of trust (nothing secret is sent); the clients verify the replicas.
    code=$(curl -k -s -o /dev/null -m 2 --connect-timeout 1 -w '%{http_code}' "$mode://$address:$port/v2/")
    case "$code" in [1-4][0-9][0-9]) exit 3 ;; esac
fi
# Refused (a host that is up and says no) or silent (dead, or hung)?
refused=$(connect 2>&1)
case "$refused" in *"Connection refused"*) exit 2 ;; esac
exit 1
