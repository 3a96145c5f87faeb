# Rendered by regdeploy (templates/actions/start-token-service.sh.j2): (re)start the registry's
# token service and wait until it answers, or fail with its journal.
set -eu
systemctl daemon-reload
systemctl enable regdeploy-token >/dev/null 2>&1
systemctl restart regdeploy-token
i=0
# -k: the certificate names registry_host, not 127.0.0.1; this asks only whether it answers.
until curl -fsSk -o /dev/null https://127.0.0.1:5002/healthz 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -ge 200 ]; then
        printf '%s does not answer on port %s after 10 s; its journal:\n' regdeploy-token 5002 >&2
        journalctl -u regdeploy-token -n 30 --no-pager >&2 || true
        exit 1
    fi
    sleep 0.05
done
