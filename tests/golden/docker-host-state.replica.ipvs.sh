# Rendered by regdeploy (templates/docker-host-state.sh.j2), the DockerHostState fact: the first thing
# a deploy reads on every host. It takes the host's deploy lock, then reports packages, the docker
# service, --insecure-registry flags on dockerd's command line, what dockerd trusts, and daemon.json.
# Included by regdeploy's scripts (templates/deploy-lock.sh.j2): the host's deploy lock.
# It belongs to the SSH connection that took it (its sshd process, by pid and start time): held for
# as long as that connection lives, free once it ends, however it ends (finished, killed, network
# gone), so no run ever has to clean up after another; a script that ends before its connection
# does calls release_deploy_lock. take_deploy_lock waits up to
# 600 s; on failure $lock_holder says who holds it. Without an sshd ancestor (run by
# systemd: the scheduled garbage collection) the lock is tied to this script's own shell instead.
lock=/run/regdeploy.lock
waited=0
lock_holder=
# proc_stat PID: its parent ($ppid) and start time ($started_at), from the fields of /proc/PID/stat
# after the command name (which may hold spaces), read with shell builtins: every deploy takes the
# lock first on every host, and a process per field adds up over a fleet sharing its cores.
proc_stat() {
    line=
    { read -r line < /proc/"$1"/stat; } 2>/dev/null || return 1
    # shellcheck disable=SC2086 # split on purpose: the fields of /proc/PID/stat after the name
    set -- ${line##*) }
    [ $# -ge 20 ] || return 1
    ppid=$2
    shift 19
    started_at=$1
}
take_deploy_lock() {
    session=$$
    while [ "$session" -gt 1 ]; do
        comm=
        { read -r comm < /proc/"$session"/comm; } 2>/dev/null
        case "$comm" in sshd*) break ;; esac
        if [ "$session" = $$ ]; then session=$PPID  # the shell knows its own parent
        elif proc_stat "$session"; then session=$ppid; else session=1; fi
    done
    [ "$session" -gt 1 ] || session=$$
    proc_stat "$session"
    me="$session $started_at"
    until try_deploy_lock; do
        if [ "$waited" -ge 600 ]; then
            lock_holder=$(cut -d' ' -f3- "$lock")
            return 1
        fi
        waited=$((waited + 1))
        sleep 1
    done
}

# try_deploy_lock: one attempt, under an flock of $lock.guard on descriptor 9, opened in this shell
# (a subshell per attempt costs a process on every host of every run) and closed after: closing the
# last descriptor of the file releases the flock.
try_deploy_lock() {
    { command exec 9>>"$lock.guard"; } 2>/dev/null || return 1
    flock -x 9
    if [ -s "$lock" ]; then
        read -r lock_pid lock_started _ < "$lock"
        if [ "$lock_pid $lock_started" = "$me" ]; then exec 9>&-; return 0; fi
        # Held while the holder's connection lives (same pid, same start time).
        if proc_stat "$lock_pid" && [ "$started_at" = "$lock_started" ]; then exec 9>&-; return 1; fi
    fi
    printf '%s %s\n' "$me" 'regdeploy test on ctl (pid 1, started 00:00:00)' > "$lock"
    set -- $?  # not taken if it could not be written
    exec 9>&-
    return "$1"
}

# release_deploy_lock: let the next run in now (only a lock this connection holds).
release_deploy_lock() {
    [ -n "${me:-}" ] || return 0
    (
        flock -x 9
        read -r pid started _ < "$lock" 2>/dev/null
        [ "$pid $started" = "$me" ] && : > "$lock"
    ) 9>>"$lock.guard"
}

if ! take_deploy_lock; then echo "lock=busy $waited $lock_holder"; exit 0; fi
echo "lock=held $waited"

# join_lines KEY FILE: the file's lines as one output line, "KEY=" and each line after a unit
# separator ($us, \037). pyinfra reads a command's output line by line, in the controller's CPU,
# for every host of every run: a file's content then costs one line. It fails, printing nothing,
# for a file that holds a unit separator itself (the caller then sends it line by line). Shell
# builtins only.
# With a third argument (masked), every secret's value is masked first (mask_secret).
us=''
join_lines() {
    text='' n=0
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        case "$line" in *"$us"*) return 1 ;; esac
        [ -z "${3:-}" ] || mask_secret
        text="$text$us$line"
    done < "$2"
    printf '%s=%s\n' "$1" "$text"
}
# send_lines LABEL FILE [masked]: the file's content as "lines.LABEL=" (join_lines), or, for a file
# that holds a unit separator, one "line.LABEL=" line per line (masked alike).
send_lines() {
    join_lines "lines.$1" "$2" "${3:-}" && return 0
    n=0
    while IFS= read -r line || [ -n "$line" ]; do
        n=$((n + 1))
        [ -z "${3:-}" ] || mask_secret
        printf 'line.%s=%s\n' "$1" "$line"
    done < "$2"
}
# mask_secret: $line, line $n of a TOML file, with its value masked if it sets a secret (a key, bare,
# quoted or dotted, ending in password, auth or identitytoken): KEY= "<regdeploy: masked line N>".
# What the apply script puts back from the file itself; no secret leaves the host.
mask_secret() {
    case "$line" in *=*) ;; *) return 0 ;; esac
    key=${line%%=*}
    name=${key%"${key##*[![:space:]]}"}
    name=${name##*[.[:space:]]}
    name=${name#[\"\']}; name=${name%[\"\']}
    case "$name" in
        password|auth|identitytoken) line="$key= \"<regdeploy: masked line $n>\"" ;;
    esac
}

# One dpkg-query for every package asked about, and Docker's own packages for its version (a
# process per check adds up over a fleet sharing cores). Packages dpkg never heard of print nothing.
# Its answer (dpkg-query reads dpkg's whole database, on every host of every run) is
# kept in $dpkg_cache with dpkg's database's mtime and read back with shell builtins while that mtime
# and the packages asked are the same and no dpkg run is half-way (entries in updates/). The mtime is
# taken before the query, so a change during the query makes the next run ask again; a login without
# root cannot keep it and always asks. Without a cache (host_caches=false) dpkg is asked every time.
dpkg_status=/var/lib/dpkg/status
dpkg_cache=/var/cache/regdeploy/dpkg-query
dpkg_asked='docker-ce docker.io containerd containerd.io docker.io docker-cli apparmor curl'
dpkg_query() {
    dpkg-query -W -f='dpkg=${Package} ${Status} ${Version}\n' docker-ce docker.io containerd containerd.io docker.io docker-cli apparmor curl 2>/dev/null \
        || [ $? -eq 1 ]  # 1: some package dpkg never heard of (docker-ce on Debian's own packages)
}
# dpkg_print FILE: a kept answer, if it was for the same packages; dpkg_pending: a dpkg run is half-way.
dpkg_print() {
    {
        IFS= read -r first && [ "$first" = "asked=$dpkg_asked" ] || return 1
        printf joined=  # one output line: see join_lines
        while IFS= read -r line; do printf '\037%s' "$line"; done
        echo
    } < "$1"
}
dpkg_pending() {
    set -- "${dpkg_status%/*}"/updates/[0-9]*
    [ -e "$1" ]
}
# shellcheck disable=SC3013 # -nt and -ot: dash, busybox and bash all have them
if [ -f "$dpkg_cache" ] && ! [ "$dpkg_status" -nt "$dpkg_cache" ] && ! [ "$dpkg_status" -ot "$dpkg_cache" ] \
        && ! dpkg_pending && dpkg_print "$dpkg_cache" 2>/dev/null; then
    :
elif mkdir -p "${dpkg_cache%/*}" 2>/dev/null && touch -r "$dpkg_status" "$dpkg_cache.mtime" 2>/dev/null \
        && { printf 'asked=%s\n' "$dpkg_asked"; dpkg_query; } > "$dpkg_cache.new" 2>/dev/null; then
    dpkg_print "$dpkg_cache.new"
    dpkg_pending || { touch -r "$dpkg_cache.mtime" "$dpkg_cache.new" && mv -f "$dpkg_cache.new" "$dpkg_cache"; }
else
    dpkg_query
fi
# The release (which packages Docker comes in) and the container runtimes there, however installed.
# Read with shell builtins, not sourced in a subshell (a fork on every host of every run): these
# three keys' values are plain words, maybe quoted.
os_id='' os_version='' os_codename=''
if [ -r /etc/os-release ]; then
    while IFS="=" read -r key value || [ -n "$key" ]; do
        value=${value#[\"\']}; value=${value%[\"\']}
        case "$key" in
            ID) os_id=$value ;; VERSION_ID) os_version=$value ;; VERSION_CODENAME) os_codename=$value ;;
        esac
    done < /etc/os-release
fi
# From here to the docker service's state: one output line, "joined=" and each after a separator.
printf 'joined=\037os=%s %s %s' "$os_id" "$os_version" "$os_codename"
for tool in dockerd podman containerd; do command -v "$tool" >/dev/null 2>&1 && printf '\037tool=%s' "$tool"; done
# Whether the kernel enforces AppArmor (Docker then needs apparmor_parser to run containers).
apparmor=
{ read -r apparmor < /sys/module/apparmor/parameters/enabled; } 2>/dev/null
printf '\037apparmor=%s' "$apparmor"
# The docker service. A dockerd (Docker's pid file, checked in /proc) running in docker.service's
# cgroup, with the unit enabled in multi-user.target and not masked, is its answer without systemctl
# (a process and a D-Bus round trip on every host of every run, a fleet's worth on shared cores). Anything else asks
# systemctl for the state and the effective ExecStart (drop-ins applied), in one call.
dockerd_pid=
{ read -r dockerd_pid < /var/run/docker.pid; } 2>/dev/null
dockerd_service=
case "$dockerd_pid" in
    ''|*[!0-9]*) ;;
    *)
        comm=
        { read -r comm < /proc/"$dockerd_pid"/comm; } 2>/dev/null
        if [ "$comm" = dockerd ]; then
            while IFS= read -r line; do
                case "$line" in *:/system.slice/docker.service) dockerd_service=yes ;; esac
            done < /proc/"$dockerd_pid"/cgroup
        fi 2>/dev/null ;;
esac
if [ -n "$dockerd_service" ] && [ -L /etc/systemd/system/multi-user.target.wants/docker.service ] \
        && ! [ -L /etc/systemd/system/docker.service ]; then
    unit='ActiveState=active
UnitFileState=enabled'
    dockerd_pids=$dockerd_pid
else
    unit=$(systemctl show docker --property=ActiveState,UnitFileState,ExecStart 2>/dev/null)
    dockerd_pids=$(pidof dockerd 2>/dev/null)
fi
while IFS= read -r line; do printf '\037%s' "$line"; done <<UNIT
$unit
UNIT
echo
# The checks' files that exist, each reported with its path, and one sha256sum for the "file"
# checks: a process per file adds up over a fleet sharing cores. Their modes and owners come from the
# find below; the controller joins those lines with the checks by path.
set --
if [ -f /etc/sysctl.d/60-regdeploy-lb-address.conf ]; then
    printf '%s\n' 'path.lb_address_sysctl=file /etc/sysctl.d/60-regdeploy-lb-address.conf'
    set -- "$@" /etc/sysctl.d/60-regdeploy-lb-address.conf
fi
if [ -f /etc/systemd/system/regdeploy-lb-address.service ]; then
    printf '%s\n' 'path.lb_address_unit=file /etc/systemd/system/regdeploy-lb-address.service'
    set -- "$@" /etc/systemd/system/regdeploy-lb-address.service
fi
if [ -f /etc/docker/certs.d/10.0.0.100:5000/ca.crt ]; then
    printf '%s\n' 'path.ca=file /etc/docker/certs.d/10.0.0.100:5000/ca.crt'
    set -- "$@" /etc/docker/certs.d/10.0.0.100:5000/ca.crt
fi
if [ -f /etc/containerd/certs.d/10.0.0.100:5000/hosts.toml ]; then
    printf '%s\n' 'path.containerd_hosts=file /etc/containerd/certs.d/10.0.0.100:5000/hosts.toml'
    set -- "$@" /etc/containerd/certs.d/10.0.0.100:5000/hosts.toml
fi
if [ -f /etc/containerd/certs.d/10.0.0.100:5000/ca.crt ]; then
    printf '%s\n' 'path.containerd_ca=file /etc/containerd/certs.d/10.0.0.100:5000/ca.crt'
    set -- "$@" /etc/containerd/certs.d/10.0.0.100:5000/ca.crt
fi
if [ -f /etc/containers/registries.conf.d/50-regdeploy.conf ]; then
    printf '%s\n' 'path.podman_conf=file /etc/containers/registries.conf.d/50-regdeploy.conf'
    set -- "$@" /etc/containers/registries.conf.d/50-regdeploy.conf
fi
if [ -f /etc/containers/certs.d/10.0.0.100:5000/ca.crt ]; then
    printf '%s\n' 'path.podman_ca=file /etc/containers/certs.d/10.0.0.100:5000/ca.crt'
    set -- "$@" /etc/containers/certs.d/10.0.0.100:5000/ca.crt
fi
if [ -f /etc/regdeploy/cache.yml ]; then
    printf '%s\n' 'path.cache_config=file /etc/regdeploy/cache.yml'
    set -- "$@" /etc/regdeploy/cache.yml
fi
if [ -f /etc/regdeploy/tls/registry.crt ]; then
    printf '%s\n' 'path.tls_cert=file /etc/regdeploy/tls/registry.crt'
    set -- "$@" /etc/regdeploy/tls/registry.crt
fi
if [ -f /etc/regdeploy/tls/registry.key ]; then
    printf '%s\n' 'path.tls_key=file /etc/regdeploy/tls/registry.key'
    set -- "$@" /etc/regdeploy/tls/registry.key
fi
if [ -f /etc/regdeploy/auth/htpasswd.previous ]; then
    printf '%s\n' 'path.htpasswd_previous=file /etc/regdeploy/auth/htpasswd.previous'
    set -- "$@" /etc/regdeploy/auth/htpasswd.previous
fi
if [ -f /etc/regdeploy/gc.sh ]; then
    printf '%s\n' 'path.gc_script=file /etc/regdeploy/gc.sh'
    set -- "$@" /etc/regdeploy/gc.sh
fi
if [ -f /etc/systemd/system/regdeploy-gc.service ]; then
    printf '%s\n' 'path.gc_service=file /etc/systemd/system/regdeploy-gc.service'
    set -- "$@" /etc/systemd/system/regdeploy-gc.service
fi
if [ -f /etc/systemd/system/regdeploy-gc.timer ]; then
    printf '%s\n' 'path.gc_timer=file /etc/systemd/system/regdeploy-gc.timer'
    set -- "$@" /etc/systemd/system/regdeploy-gc.timer
fi
if [ -f /etc/systemd/system/timers.target.wants/regdeploy-gc.timer ]; then
    printf '%s\n' 'path.gc_enabled=file /etc/systemd/system/timers.target.wants/regdeploy-gc.timer'
    set -- "$@" /etc/systemd/system/timers.target.wants/regdeploy-gc.timer
fi
if [ -f /etc/regdeploy/retention.json ]; then
    printf '%s\n' 'path.gc_rules=file /etc/regdeploy/retention.json'
    set -- "$@" /etc/regdeploy/retention.json
fi
if [ -f /usr/local/lib/regdeploy-prune/retention.py ]; then
    printf '%s\n' 'path.gc_planner=file /usr/local/lib/regdeploy-prune/retention.py'
    set -- "$@" /usr/local/lib/regdeploy-prune/retention.py
fi
if [ -f /usr/local/lib/regdeploy-prune/token_service.py ]; then
    printf '%s\n' 'path.gc_planner_lib=file /usr/local/lib/regdeploy-prune/token_service.py'
    set -- "$@" /usr/local/lib/regdeploy-prune/token_service.py
fi
if [ -f /usr/local/lib/regdeploy/token_service.py ]; then
    printf '%s\n' 'path.token_script=file /usr/local/lib/regdeploy/token_service.py'
    set -- "$@" /usr/local/lib/regdeploy/token_service.py
fi
if [ -f /etc/systemd/system/regdeploy-token.service ]; then
    printf '%s\n' 'path.token_unit=file /etc/systemd/system/regdeploy-token.service'
    set -- "$@" /etc/systemd/system/regdeploy-token.service
fi
if [ -f /etc/systemd/system/multi-user.target.wants/regdeploy-token.service ]; then
    printf '%s\n' 'path.token_enabled=file /etc/systemd/system/multi-user.target.wants/regdeploy-token.service'
    set -- "$@" /etc/systemd/system/multi-user.target.wants/regdeploy-token.service
fi
if [ -f /etc/regdeploy/token/config.json ]; then
    printf '%s\n' 'path.token_config=file /etc/regdeploy/token/config.json'
    set -- "$@" /etc/regdeploy/token/config.json
fi
if [ -f /etc/regdeploy/token/signing.key ]; then
    printf '%s\n' 'path.token_key=file /etc/regdeploy/token/signing.key'
    set -- "$@" /etc/regdeploy/token/signing.key
fi
if [ -f /etc/regdeploy/auth/token-signing.crt ]; then
    printf '%s\n' 'path.token_cert=file /etc/regdeploy/auth/token-signing.crt'
    set -- "$@" /etc/regdeploy/auth/token-signing.crt
fi
[ $# -eq 0 ] || sha256sum --tag -- "$@" 2>/dev/null
# token_service: whether systemd runs regdeploy-token.service: the link systemd keeps for an active unit (no process).
[ -L /run/systemd/units/invocation:regdeploy-token.service ] && echo running=token_service
# regdeploy-lb-address.service: whether regdeploy-lb-address.service starts at boot: its link in multi-user.target.wants, and no mask.
[ -L /etc/systemd/system/multi-user.target.wants/regdeploy-lb-address.service ] \
    && ! [ -L /etc/systemd/system/regdeploy-lb-address.service ] && echo enabled=regdeploy-lb-address.service
# loopback: what `ip -o -4 address show dev lo` prints, line by line.
ip -o -4 address show dev lo 2>/dev/null | while IFS= read -r line; do printf 'line.%s=%s\n' loopback "$line"; done
# arp: what `sysctl -n net.ipv4.conf.all.arp_ignore net.ipv4.conf.all.arp_announce` prints, line by line.
sysctl -n net.ipv4.conf.all.arp_ignore net.ipv4.conf.all.arp_announce 2>/dev/null | while IFS= read -r line; do printf 'line.%s=%s\n' arp "$line"; done
# managed_by: its content too (bcrypt hashes: what regdeploy verifies passwords against).
if [ -f /var/lib/regdeploy/managed-by ]; then
    printf '%s\n' 'path.managed_by=lines /var/lib/regdeploy/managed-by'
    set -- "$@" /var/lib/regdeploy/managed-by
    send_lines managed_by /var/lib/regdeploy/managed-by
fi
# lb_address_unit_lines: its content too (bcrypt hashes: what regdeploy verifies passwords against).
if [ -f /etc/systemd/system/regdeploy-lb-address.service ]; then
    printf '%s\n' 'path.lb_address_unit_lines=lines /etc/systemd/system/regdeploy-lb-address.service'
    set -- "$@" /etc/systemd/system/regdeploy-lb-address.service
    send_lines lb_address_unit_lines /etc/systemd/system/regdeploy-lb-address.service
fi
# login: regdeploy's stamp (user and a bcrypt hash) beside a credential it put there, shown only
# while the credential itself is there and mentions "10.0.0.100:5000"; the credential's mode from the find.
if [ -f /root/.docker/regdeploy-login ] && [ -f /root/.docker/config.json ] && grep -qF '"10.0.0.100:5000"' /root/.docker/config.json; then
    stamp=
    { IFS= read -r stamp || [ -n "$stamp" ]; } < /root/.docker/regdeploy-login
    printf 'stamp.login=%s\n' "$stamp"
    printf '%s\n' 'path.login=stamp /root/.docker/config.json'
    set -- "$@" /root/.docker/config.json
fi
# podman_login: regdeploy's stamp (user and a bcrypt hash) beside a credential it put there, shown only
# while the credential itself is there and mentions "10.0.0.100:5000"; the credential's mode from the find.
if [ -f /root/.config/containers/regdeploy-login ] && [ -f /root/.config/containers/auth.json ] && grep -qF '"10.0.0.100:5000"' /root/.config/containers/auth.json; then
    stamp=
    { IFS= read -r stamp || [ -n "$stamp" ]; } < /root/.config/containers/regdeploy-login
    printf 'stamp.podman_login=%s\n' "$stamp"
    printf '%s\n' 'path.podman_login=stamp /root/.config/containers/auth.json'
    set -- "$@" /root/.config/containers/auth.json
fi
# containerd_config: its content too (every secret's value masked).
if [ -f /etc/containerd/config.toml ]; then
    printf '%s\n' 'path.containerd_config=lines /etc/containerd/config.toml'
    set -- "$@" /etc/containerd/config.toml
    send_lines containerd_config /etc/containerd/config.toml masked
fi
# containerd_login: regdeploy's stamp (user and a bcrypt hash) beside a credential it put there, shown only
# while the credential itself is there and mentions "10.0.0.100:5000"; the credential's mode from the find.
if [ -f /etc/containerd/regdeploy-login ] && [ -f /etc/containerd/config.toml ] && grep -qF '"10.0.0.100:5000"' /etc/containerd/config.toml; then
    stamp=
    { IFS= read -r stamp || [ -n "$stamp" ]; } < /etc/containerd/regdeploy-login
    printf 'stamp.containerd_login=%s\n' "$stamp"
    printf '%s\n' 'path.containerd_login=stamp /etc/containerd/config.toml'
    set -- "$@" /etc/containerd/config.toml
fi
# htpasswd: its content too (bcrypt hashes: what regdeploy verifies passwords against).
if [ -f /etc/regdeploy/auth/htpasswd ]; then
    printf '%s\n' 'path.htpasswd=lines /etc/regdeploy/auth/htpasswd'
    set -- "$@" /etc/regdeploy/auth/htpasswd
    send_lines htpasswd /etc/regdeploy/auth/htpasswd
fi
# api: regdeploy's stamp (user and a bcrypt hash) beside a credential it put there, shown only
# while the credential itself is there; the credential's mode from the find.
if [ -f /etc/regdeploy/api-credentials.regdeploy-stamp ] && [ -f /etc/regdeploy/api-credentials ]; then
    stamp=
    { IFS= read -r stamp || [ -n "$stamp" ]; } < /etc/regdeploy/api-credentials.regdeploy-stamp
    printf 'stamp.api=%s\n' "$stamp"
    printf '%s\n' 'path.api=stamp /etc/regdeploy/api-credentials'
    set -- "$@" /etc/regdeploy/api-credentials
fi
path=/etc/docker/daemon.json
if [ -f "$path" ] && ! [ -L "$path" ]; then
    printf 'path.daemon.json=present %s\n' "$path"
    set -- "$@" "$path"
fi
# dockerd refuses to start when an option is both on its command line and in daemon.json. One grep
# (command lines' NULs read as text) looks for --insecure-registry in the running daemons' command
# lines, /etc/default/docker's DOCKER_OPTS and the unit's files and drop-ins, which a daemon-reload
# may have changed under a running daemon. Only if it finds one is what dockerd gets reported: from
# the running daemons, /etc/default/docker and the unit's effective ExecStart as systemd has it
# (drop-ins applied, so an ExecStart a drop-in replaced does not count).
flags() {
    grep -saE "$@" -e '^[^#]*dockerd.*--insecure-registry' -e '^[[:space:]]*ExecStart=.*--insecure-registry' \
        -e '^[[:space:]]*(export[[:space:]]+)?DOCKER_OPTS=.*--insecure-registry'
}
units=  # no spaces in these paths: split and globbed where used
for dir in /etc/systemd/system /run/systemd/system /usr/local/lib/systemd/system /usr/lib/systemd/system \
        /lib/systemd/system; do
    units="$units $dir/docker.service $dir/docker.service.d/*.conf"
done
# A grep that found nothing is not run again while nothing it reads can have changed: it is a process
# on every host of every run. Before it greps, a run writes its shell's pid to $flags_round, whose mtime
# says when the grep began. After a grep that found nothing, $flags_seen gets the boot id, the running
# daemons' pids and that round's pid. The grep is skipped while all of these hold:
# - the boot id and the daemons' pids are the same;
# - $flags_seen names the round in $flags_round (a run that died mid-grep left a round of its own);
# - every file grep reads (the unit's files and drop-ins, /etc/default/docker) last changed in a
#   second before that grep began, and none is a symbolic link (whose target's changes its own
#   change time does not show).
# A file's change time (ctime) cannot be set back by cp -p, touch or a package's old mtimes; a new
# file or drop-in has changed when it appears; one taken away can only take a flag away. Only the
# clock stepping back after a grep could hide a change (a reboot changes the boot id, a dockerd
# restart the pids).
flags_seen="${dpkg_cache%/*}/insecure-registry-flags-seen"
flags_round="${dpkg_cache%/*}/insecure-registry-flags-round"
boot_id=
{ read -r boot_id < /proc/sys/kernel/random/boot_id; } 2>/dev/null
flags_key="$boot_id $dockerd_pids"
# One find for the modes and owners of the checks' files and daemon.json (stat=), and for the change
# times of what grep reads and of $flags_round: one process for both. The paths are absolute, so find
# never takes one for an expression; each ends with "/" so that read keeps a trailing space.
# shellcheck disable=SC2086 # $units: unit files and drop-in globs, split and expanded on purpose
stats=$(find "$@" $units /etc/default/docker "$flags_round" -maxdepth 0 -printf '%m %u %C@ %T@ %p/\n' 2>/dev/null)
newest=0
round=
while read -r mode owner changed modified name; do
    name=${name%/}
    case "$name" in
        '') ;;
        "$flags_round") round=${modified%.*} ;;
        /etc/default/docker|*/docker.service|*/docker.service.d/*.conf)
            if [ -L "$name" ]; then newest=linked
            elif [ "$newest" != linked ] && [ "${changed%.*}" -gt "$newest" ]; then newest=${changed%.*}; fi ;;
        *) printf 'stat=%s %s %s\n' "$mode" "$owner" "$name" ;;
    esac
done <<STATS
$stats
STATS
seen='' round_pid=''
{ IFS= read -r seen < "$flags_seen"; } 2>/dev/null
{ IFS= read -r round_pid < "$flags_round"; } 2>/dev/null
if [ -n "$round" ] && [ "$seen" = "$flags_key $round_pid" ] && [ "$newest" != linked ] \
        && [ "$newest" -lt "$round" ]; then
    :  # nothing named the flag then, and nothing grep reads has changed since
else
    # printf, not ":": a failed redirection of a special builtin would end the script.
    { printf '%s\n' $$ > "$flags_round"; } 2>/dev/null
    set --
    for pid in $dockerd_pids; do set -- "$@" /proc/"$pid"/cmdline; done
    set -- "$@" /etc/default/docker
    # shellcheck disable=SC2086 # as above
    if flags -q "$@" $units; then
        { printf '' > "$flags_seen"; } 2>/dev/null
        case "$unit" in *ExecStart=*) ;; *) unit=$(systemctl show docker --property=ExecStart 2>/dev/null) ;; esac
        flags -H "$@" | tr '\0' ' ' | sed 's|^/proc/[0-9]*/cmdline:|running dockerd: |; s/^/flag=/'
        printf '%s\n' "$unit" | sed -n '/^ExecStart=.*--insecure-registry/s/^/flag=/p'
    else
        { printf '%s\n' "$flags_key $$" > "$flags_seen"; } 2>/dev/null
    fi
fi
# The registry server's side (registry), in the same round trip (one fact per host, whatever its role).
( 
    # Included by the DockerHostState fact on the registry server (templates/registry-server-state.sh.j2),
    # in a subshell: the registry's config.yml hash, its data directory, the image, who publishes the
    # port, the registry container (its inspect JSON, on one line) and, when that container keeps its
    # data elsewhere than the data directory, how much data is there. Reads only.
    config=/etc/regdeploy/config.yml
    data=/var/lib/registry
    name=registry
    if [ -f "$config" ]; then echo "config=$(sha256sum < "$config" | cut -d' ' -f1)"; fi
    # lost+found alone (a fresh filesystem mounted there) still counts as empty.
    # shellcheck disable=SC2010,SC2143 # names only tested, never parsed; lost+found is the filesystem's
    if [ ! -d "$data" ]; then echo data_dir=absent
    elif [ -e "$data"/.regdeploy-migration-incomplete ]; then echo data_dir=partial
    elif [ -e "$data"/.regdeploy-moved-to-s3 ]; then echo data_dir=moved
    elif [ -z "$(ls -A "$data" | grep -vx lost+found)" ]; then echo data_dir=empty
    else echo data_dir=data; fi
    command -v docker >/dev/null 2>&1 || exit 0
    image=registry:2
    label='"regdeploy.spec-sha256"'
    # Each docker command is a process that starts Docker's Go client, and the server's fact is the one
    # the whole run waits for. Where curl and Docker's socket are there, everything comes from Docker's
    # API in one curl:
    # the image's JSON (it starts with its id), then each container's inspect JSON (what `docker
    # container inspect` prints), each on one line and followed by an end mark. One awk takes them
    # apart: first a head line for this shell ("yes" if the container is there, its storage's path,
    # "yes" if it runs and publishes the port on every address, "|" between), then the lines for the
    # controller. The storage's path is cut from the JSON (Docker writes a mount's Source just before
    # its Destination); the controller checks it against the parsed JSON before trusting it.
    if [ -S /var/run/docker.sock ] && command -v curl >/dev/null 2>&1; then
        out=$(curl -s --unix-socket /var/run/docker.sock -w '\nregdeploy:end\n' "http://docker/images/$image/json" "http://docker/containers/"registry/json "http://docker/containers/"registry.regdeploy-old/json "http://docker/containers/"registry-cache/json \
            | awk -v port=5000 -v label="$label" -v target=/var/lib/registry '
                $0 == "regdeploy:end" { answer++; next }
                answer == 0 && match($0, /^\{"Id":"sha256:[0-9a-f]+"/) { image = substr($0, 8, RLENGTH - 8) }
                answer == 1 && /^\{"Id":/ { registry = $0 }
                answer == 2 && /^\{"Id":/ { aside = 1 }
                # A pull-through cache an earlier run made, now that none is configured (its JSON has our label).
                answer == 3 && /^\{"Id":/ && index($0, label) { cache = 1 }
                END {
                    tail = "\",\"Destination\":\"" target "\""
                    if (match(registry, "\"Source\":\"[^\"]*" tail))
                        storage = substr(registry, RSTART + 10, RLENGTH - 10 - length(tail))
                    here = index(registry, "\"Running\":true") && index(registry, "\"HostIp\":\"0.0.0.0\",\"HostPort\":\"" port "\"")
                    print (registry != "" ? "yes" : "") "|" storage "|" (here ? "yes" : "") "regdeploy:head"
                    print "image=" image
                    if (aside) print "aside_left=yes"
                    if (cache) print "cache_left=yes"
                    if (registry != "") print "container-json=" registry
                }')
        head=${out%%regdeploy:head*}
        running_here=${head##*|}
        head=${head%|*}
        registry=${head%%|*}
        storage=${head#*|}
        out=${out#*regdeploy:head}
        printf '%s\n' "${out#?}"
    else
        echo "image=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null)"
        # The containers in one call: per container a "mounted=/NAME STORAGE running=BOOL ports= HOSTIP:HOSTPORT ... "
        # line, then its inspect JSON on one line.
        inspected=$(docker container inspect --format 'mounted={{.Name}} {{range .Mounts}}{{if eq .Destination "/var/lib/registry"}}{{.Source}}{{end}}{{end}} running={{.State.Running}} ports={{range $p, $c := .NetworkSettings.Ports}}{{range $c}} {{.HostIp}}:{{.HostPort}}{{end}}{{end}} {{"\n"}}{{json .}}' \
            registry registry.regdeploy-old registry-cache 2>/dev/null)
        # json_of NAME: the JSON line after NAME's "mounted=" line.
        json_of() { printf '%s\n' "$inspected" | awk -v n="mounted=/$1" 'keep { print; exit } $1 == n { keep = 1 }'; }
        registry=$(json_of registry)
        line=$(printf '%s\n' "$inspected" | grep -F "mounted=/"registry' ')
        storage=${line#* }
        storage=${storage%% running=*}
        case "$line" in *" running=true ports="*" 0.0.0.0:5000 "*) running_here=yes ;; esac
        [ -n "$(json_of registry.regdeploy-old)" ] && echo aside_left=yes
        case "$(json_of registry-cache)" in *"$label"*) echo cache_left=yes ;; esac
        [ -n "$registry" ] && printf 'container-json=%s\n' "$registry"
    fi
    if [ -n "${running_here:-}" ]; then
        echo "holder=$name"
    else
        docker ps --filter publish=5000 --format 'holder={{.Names}}' 2>/dev/null
    fi
    # The registry container's storage, as read here; when it is not the data directory, how much is there.
    [ -n "$registry" ] && echo "storage_source=$storage"
    if [ -n "$storage" ] && [ "$storage" != "$data" ] && [ -d "$storage" ]; then
        # shellcheck disable=SC2010 # as above
        echo "storage_entries=$(ls -A "$storage" | grep -vxc lost+found)"
        echo "storage_repositories=$(find "$storage/docker/registry/v2/repositories" -type d -name _manifests 2>/dev/null | wc -l)"
        echo "storage_bytes=$(du -sb "$storage" | cut -f1)"
    fi

) | sed 's/^/registry./'
# What the running daemon trusts: a file can say more than dockerd has loaded (a deploy killed
# between writing and reloading, a hand edit). `docker info` gathers the whole daemon's state, so it is asked only
# when the file is not the one regdeploy last saw dockerd take (the apply script's stamp).
# The stamp holds the file's SHA-256 and has the file's mtime (the apply script copies it): an equal
# mtime, to the nanosecond with shell builtins, saves hashing the file. A stamp with the hash but
# another mtime (written before stamps had it, or the file touched) is checked by hash, then given it.
confirmed=
{ read -r confirmed < "$path".regdeploy-confirmed; } 2>/dev/null
# shellcheck disable=SC3013 # as above
if [ -f "$path" ] && [ -n "$confirmed" ] && ! [ "$path" -nt "$path".regdeploy-confirmed ] \
        && ! [ "$path" -ot "$path".regdeploy-confirmed ]; then
    echo "trusted=(confirmed)"
elif [ -f "$path" ] && [ -n "$confirmed" ] && [ "$(sha256sum < "$path")" = "$confirmed" ]; then
    touch -r "$path" "$path".regdeploy-confirmed 2>/dev/null
    echo "trusted=(confirmed)"
else
    echo "trusted=$(docker info --format '{{range $name, $index := .RegistryConfig.IndexConfigs}}{{if not $index.Secure}}{{$name}} {{end}}{{end}}' 2>/dev/null || echo '(unknown)')"
fi
# The file last: its content on one line before it, or else everything after its line, verbatim.
# Read with shell builtins: one process fewer on every host (a file without a final newline too).
if [ -L "$path" ]; then echo "daemon.json=symlink $(readlink "$path")"
elif [ -f "$path" ] && join_lines daemon.json.joined "$path"; then
    echo "daemon.json=present"  # its mode: the find above
elif [ -f "$path" ]; then
    echo "daemon.json=present"
    while IFS= read -r line || [ -n "$line" ]; do printf '%s\n' "$line"; done < "$path"
elif [ -e "$path" ]; then echo "daemon.json=other $(stat -c %F "$path")"
else echo daemon.json=absent; fi
