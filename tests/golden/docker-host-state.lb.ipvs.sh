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
dpkg_asked='docker-ce docker.io containerd containerd.io keepalived ipvsadm curl redis-server'
dpkg_query() {
    dpkg-query -W -f='dpkg=${Package} ${Status} ${Version}\n' docker-ce docker.io containerd containerd.io keepalived ipvsadm curl redis-server 2>/dev/null \
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
if [ -f /etc/regdeploy/config.yml ]; then
    printf '%s\n' 'path.former_registry=file /etc/regdeploy/config.yml'
    set -- "$@" /etc/regdeploy/config.yml
fi
if [ -f /etc/haproxy/regdeploy/registry.pem ]; then
    printf '%s\n' 'path.lb_pem=file /etc/haproxy/regdeploy/registry.pem'
    set -- "$@" /etc/haproxy/regdeploy/registry.pem
fi
if [ -f /etc/haproxy/regdeploy/ca.crt ]; then
    printf '%s\n' 'path.lb_ca=file /etc/haproxy/regdeploy/ca.crt'
    set -- "$@" /etc/haproxy/regdeploy/ca.crt
fi
if [ -f /usr/local/libexec/regdeploy-replica-check ]; then
    printf '%s\n' 'path.ipvs_check=file /usr/local/libexec/regdeploy-replica-check'
    set -- "$@" /usr/local/libexec/regdeploy-replica-check
fi
if [ -f /etc/sysctl.d/60-regdeploy-ipvs.conf ]; then
    printf '%s\n' 'path.ipvs_sysctl=file /etc/sysctl.d/60-regdeploy-ipvs.conf'
    set -- "$@" /etc/sysctl.d/60-regdeploy-ipvs.conf
fi
if [ -f /etc/modules-load.d/regdeploy-ipvs.conf ]; then
    printf '%s\n' 'path.ipvs_modules=file /etc/modules-load.d/regdeploy-ipvs.conf'
    set -- "$@" /etc/modules-load.d/regdeploy-ipvs.conf
fi
if [ -f /etc/redis/redis.conf ]; then
    printf '%s\n' 'path.cache_conf=file /etc/redis/redis.conf'
    set -- "$@" /etc/redis/redis.conf
fi
if [ -f /etc/redis/regdeploy-auth.conf ]; then
    printf '%s\n' 'path.cache_auth=file /etc/redis/regdeploy-auth.conf'
    set -- "$@" /etc/redis/regdeploy-auth.conf
fi
if [ -f /usr/local/sbin/regdeploy-flush-blob-cache ]; then
    printf '%s\n' 'path.cache_flush=file /usr/local/sbin/regdeploy-flush-blob-cache'
    set -- "$@" /usr/local/sbin/regdeploy-flush-blob-cache
fi
if [ -f /etc/keepalived/keepalived.conf ]; then
    printf '%s\n' 'path.keepalived_conf=file /etc/keepalived/keepalived.conf'
    set -- "$@" /etc/keepalived/keepalived.conf
fi
[ $# -eq 0 ] || sha256sum --tag -- "$@" 2>/dev/null
# haproxy.service: whether systemd runs haproxy.service: the link systemd keeps for an active unit (no process).
[ -L /run/systemd/units/invocation:haproxy.service ] && echo running=haproxy.service
# redis-server.service: whether systemd runs redis-server.service: the link systemd keeps for an active unit (no process).
[ -L /run/systemd/units/invocation:redis-server.service ] && echo running=redis-server.service
# keepalived.service: whether systemd runs keepalived.service: the link systemd keeps for an active unit (no process).
[ -L /run/systemd/units/invocation:keepalived.service ] && echo running=keepalived.service
# haproxy.service: whether haproxy.service starts at boot: its link in multi-user.target.wants, and no mask.
[ -L /etc/systemd/system/multi-user.target.wants/haproxy.service ] \
    && ! [ -L /etc/systemd/system/haproxy.service ] && echo enabled=haproxy.service
# redis-server.service: whether redis-server.service starts at boot: its link in multi-user.target.wants, and no mask.
[ -L /etc/systemd/system/multi-user.target.wants/redis-server.service ] \
    && ! [ -L /etc/systemd/system/redis-server.service ] && echo enabled=redis-server.service
# keepalived.service: whether keepalived.service starts at boot: its link in multi-user.target.wants, and no mask.
[ -L /etc/systemd/system/multi-user.target.wants/keepalived.service ] \
    && ! [ -L /etc/systemd/system/keepalived.service ] && echo enabled=keepalived.service
# ipvs_sysctls: what `sysctl -n net.ipv4.vs.expire_nodest_conn net.ipv4.vs.sloppy_tcp` prints, line by line.
sysctl -n net.ipv4.vs.expire_nodest_conn net.ipv4.vs.sloppy_tcp 2>/dev/null | while IFS= read -r line; do printf 'line.%s=%s\n' ipvs_sysctls "$line"; done
# addresses: what `ip -o -4 addr show` prints, line by line.
ip -o -4 addr show 2>/dev/null | while IFS= read -r line; do printf 'line.%s=%s\n' addresses "$line"; done
# managed_by: its content too (bcrypt hashes: what regdeploy verifies passwords against).
if [ -f /var/lib/regdeploy/managed-by ]; then
    printf '%s\n' 'path.managed_by=lines /var/lib/regdeploy/managed-by'
    set -- "$@" /var/lib/regdeploy/managed-by
    send_lines managed_by /var/lib/regdeploy/managed-by
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
