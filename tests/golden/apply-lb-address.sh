# Rendered by regdeploy (templates/apply-lb-address.sh.j2): this replica takes registry_lb_vip on its
# loopback, the ARP settings first (answering ARP for it would draw the clients away from the load
# balancers), and keeps it at boot (regdeploy-lb-address.service).
set -eu
sysctl -q -p /etc/sysctl.d/60-regdeploy-lb-address.conf
ip address replace 10.0.0.100/32 dev lo
systemctl daemon-reload
systemctl enable --now regdeploy-lb-address.service >/dev/null 2>&1 || systemctl enable --now regdeploy-lb-address.service
