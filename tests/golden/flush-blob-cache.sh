#!/bin/sh
# Rendered by regdeploy (templates/flush-blob-cache.sh.j2) on a registry_lb host (registry_lb_cache):
# empties the blob-descriptor cache of this host's redis. keepalived runs it when this host takes the
# load balancers' address or gives it up (what it cached may be deleted before it holds it again);
# `regdeploy gc` and `prune` run it after the collector deleted blobs. Exit 0 once redis said OK.
set -u
auth=/etc/redis/regdeploy-auth.conf
password=$(sed -n 's/^requirepass //p' "$auth") || exit 1
[ -n "$password" ] || { echo "regdeploy: no password in $auth" >&2; exit 1; }
REDISCLI_AUTH=$password
export REDISCLI_AUTH
reply=$(redis-cli -h 127.0.0.1 -p 6379 FLUSHALL 2>&1)
if [ "$reply" != OK ]; then
    echo "regdeploy: this host's blob-descriptor cache (redis, port 6379) was not emptied: $reply" >&2
    exit 1
fi
