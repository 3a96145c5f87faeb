#!/bin/sh
# The lab's S3 store: a one-node Ceph from Debian's packages (precached in the bookworm image) with
# its RADOS gateway, one bucket and one key. Run once on a fresh `store` host by `python -m lab up
# --replicas N`, as `sh -c SCRIPT store ACCESS_KEY BUCKET PORT`, the secret key on the first line of stdin.
# One monitor, one BlueStore OSD on a sparse file, radosgw with the beast frontend, no manager: pool
# size 1 allowed, PG autoscaling off, every gateway pool (the multipart `non-ec` one too: made on
# demand it stalls the first large push) created up front. The monitor's free-space warnings are
# lowered: it stops below mon_data_avail_crit, and this machine's disk may be under 30 % free.
set -eu
access_key=$1 bucket=$2 port=$3
read -r secret_key
host=$(hostname -s)
ip=$(hostname -I | cut -d' ' -f1)
net=$(ip -o -f inet addr show scope global | awk '{print $4; exit}')
fsid=$(cat /proc/sys/kernel/random/uuid)
say() { echo "store: $*" >&2; }

DEBIAN_FRONTEND=noninteractive apt-get install -y -q ceph-mon ceph-osd radosgw ceph-common >/dev/null
mkdir -p /etc/ceph
cat > /etc/ceph/ceph.conf <<CONF
[global]
fsid = $fsid
mon initial members = $host
mon host = $ip
public network = $net
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 2
mon data avail crit = 1
osd objectstore = bluestore
osd memory target = 536870912
bluestore block create = true
bluestore block size = 4294967296
[client.rgw.$host]
rgw frontends = beast port=$port
CONF
# The monitor, its keys and the admin's.
ceph-authtool --create-keyring /tmp/mon.keyring --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool --create-keyring /etc/ceph/ceph.client.admin.keyring --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
ceph-authtool /tmp/mon.keyring --import-keyring /etc/ceph/ceph.client.admin.keyring >/dev/null
monmaptool --create --add "$host" "$ip" --fsid "$fsid" /tmp/monmap >/dev/null
install -d -o ceph -g ceph "/var/lib/ceph/mon/ceph-$host"
chown ceph:ceph /tmp/mon.keyring /tmp/monmap
runuser -u ceph -- ceph-mon --mkfs -i "$host" --monmap /tmp/monmap --keyring /tmp/mon.keyring
systemctl start "ceph-mon@$host"
say "monitor up"
# One OSD; its BlueStore block device is a sparse 4 GiB file in its directory.
uuid=$(cat /proc/sys/kernel/random/uuid)
id=$(ceph osd new "$uuid")
dir=/var/lib/ceph/osd/ceph-$id
install -d -o ceph -g ceph "$dir"
ceph auth get-or-create "osd.$id" mon 'allow profile osd' mgr 'allow profile osd' osd 'allow *' -o "$dir/keyring"
chown -R ceph:ceph "$dir"
runuser -u ceph -- ceph-osd -i "$id" --mkfs --osd-uuid "$uuid" >/dev/null 2>&1
systemctl start "ceph-osd@$id"
say "osd.$id up"
for pool in .rgw.root default.rgw.log default.rgw.control default.rgw.meta default.rgw.buckets.index \
            default.rgw.buckets.data default.rgw.buckets.non-ec; do
    ceph osd pool create "$pool" 8 8 >/dev/null 2>&1
    ceph osd pool application enable "$pool" rgw >/dev/null 2>&1
done
# The gateway, and the registry's account.
rgw=/var/lib/ceph/radosgw/ceph-rgw.$host
install -d -o ceph -g ceph "$rgw"
ceph auth get-or-create "client.rgw.$host" mon 'allow rw' osd 'allow rwx' -o "$rgw/keyring"
chown ceph:ceph "$rgw/keyring"
systemctl start "ceph-radosgw@rgw.$host"
radosgw-admin user create --uid=registry --display-name=registry \
    --access-key="$access_key" --secret-key="$secret_key" >/dev/null
# Ready once the gateway answers and the bucket exists (not on `ceph health`: no manager reports it).
i=0
until curl -fsS -o /dev/null "http://$ip:$port/" 2>/dev/null; do
    i=$((i + 1)); [ "$i" -lt 300 ] || { say "radosgw did not answer on port $port"; exit 1; }; sleep 0.2
done
s3() { curl -fsS --aws-sigv4 "aws:amz:us-east-1:s3" --user "$access_key:$secret_key" \
           -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"; }
s3 -X PUT "http://$ip:$port/$bucket" >/dev/null
s3 -o /dev/null "http://$ip:$port/$bucket"
say "bucket $bucket ready at http://$ip:$port"
