# Rendered by regdeploy (templates/actions/stop-token-service.sh.j2): registry_access was emptied and
# the registry no longer sends clients to the token service: stop it and remove its files.
set -eu
systemctl disable --now regdeploy-token >/dev/null 2>&1 || true
rm -rf /etc/systemd/system/regdeploy-token.service /usr/local/lib/regdeploy /etc/regdeploy/token /etc/regdeploy/auth/token-signing.crt
systemctl daemon-reload
