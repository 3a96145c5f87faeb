# Rendered by regdeploy (templates/remove-lb-address.sh.j2): this host no longer holds the load
# balancers' address on its loopback and no longer takes it at boot (registry_lb_mode or registry_lb_vip
# changed, or it is no longer a replica behind IPVS).
set -eu
ip address del 10.0.0.100/32 dev lo
systemctl disable regdeploy-lb-address.service >/dev/null 2>&1 || true
rm -f /etc/systemd/system/regdeploy-lb-address.service /etc/sysctl.d/60-regdeploy-lb-address.conf
systemctl daemon-reload
