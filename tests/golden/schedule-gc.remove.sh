# Rendered by regdeploy (templates/schedule-gc.sh.j2): install (or remove) the registry's
# scheduled garbage collection. The schedule is checked by systemd before any file is written.
set -eu
unit=regdeploy-gc
systemctl disable --now "$unit.timer" >/dev/null 2>&1 || true
rm -f /etc/regdeploy/gc.sh /etc/systemd/system/regdeploy-gc.service /etc/systemd/system/regdeploy-gc.timer /etc/systemd/system/timers.target.wants/regdeploy-gc.timer /etc/regdeploy/retention.json /usr/local/lib/regdeploy-prune/retention.py /usr/local/lib/regdeploy-prune/token_service.py 
rm -rf /usr/local/lib/regdeploy-prune/__pycache__
rmdir /usr/local/lib/regdeploy-prune 2>/dev/null || true
systemctl daemon-reload
