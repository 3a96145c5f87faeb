"""The run-registry script's failure paths, against a stand-in `docker` and `curl` (shell functions
that keep containers as directories): a replacement that never answers is rolled back to the previous
container, an adopted one is kept, and a copy the registry does not serve stops the move before
anything is set aside. No Docker, no host; each case takes some hundredths of a second."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from regdeploy.registry_plan import ASIDE_SUFFIX, KEPT_SUFFIX, MIGRATION_MARKER, Migration, RegistryPlan, Storage
from regdeploy.registry_run import desired_container, run_script
from regdeploy.settings import validate_hosts

STAND_INS = r"""
D={state}
ANSWERS={answers}
docker() {{
    echo "docker $*" >> "$D/calls"
    stand_in_cmd=$1; shift
    case "$stand_in_cmd" in
        container) shift; [ "$1" = -f ] && shift 2; [ -d "$D/c/$1" ] || return 1; cat "$D/c/$1/running" ;;
        stop) [ "$1" = -t ] && shift 2; [ -d "$D/c/$1" ] || return 1; echo false > "$D/c/$1/running" ;;
        start) [ -d "$D/c/$1" ] || return 1; echo true > "$D/c/$1/running" ;;
        rename) [ -d "$D/c/$1" ] && [ ! -e "$D/c/$2" ] || return 1; mv "$D/c/$1" "$D/c/$2" ;;
        update) [ -d "$D/c/$2" ] || return 1; echo "${{1#--restart=}}" > "$D/c/$2/restart" ;;
        rm) while [ "${{1#-}}" != "$1" ]; do shift; done; [ -d "$D/c/$1" ] || return 1; rm -r "$D/c/$1" ;;
        # Its own variables start with stand_in_: a shell function shares the script's.
        run) stand_in_name='' stand_in_policy=no
             while [ $# -gt 0 ]; do
                 case "$1" in
                     --name) stand_in_name=$2; shift 2 ;;
                     --restart) stand_in_policy=$2; shift 2 ;;
                     *) shift ;;
                 esac
             done
             stand_in_c="$D/c/$stand_in_name"
             [ ! -e "$stand_in_c" ] || return 125
             mkdir -p "$stand_in_c" && echo true > "$stand_in_c/running" && echo "$stand_in_policy" > "$stand_in_c/restart" \
                 && echo new > "$stand_in_c/id" ;;
        port) echo 127.0.0.1:5999 ;;
        logs) echo "stand-in: the new registry logged nothing" ;;
        *) return 1 ;;
    esac
}}
# The registry's API: the catalog is empty; GET /v2/ and /debug/health answer only if ANSWERS=yes.
# The load balancers' status pages: the CSV says $D/lb-state (UP, DRAIN...) for every replica; the
# admin form answers with the redirect haproxy sends, DENY while $D/lb-deny exists.
curl() {{
    echo "curl $*" >> "$D/calls"
    case "$*" in
        *"/stats;csv"*) printf 'registry_replicas,reg1,0,0,0,0,,0,0,0,,0,,0,0,0,0,%s\n' "$(cat "$D/lb-state")" ;;
        *"action=drain"*"/stats" | *"action=ready"*"/stats")
            if [ -e "$D/lb-deny" ]; then printf 'http://lb/stats;st=DENY'; return 0; fi
            case "$*" in *action=drain*) echo DRAIN ;; *) echo UP ;; esac > "$D/lb-state"
            printf 'http://lb/stats;st=DONE' ;;
        *"/v2/_catalog"*) [ "$ANSWERS" = yes ] && printf 'HTTP/1.1 200 OK\r\n\r\n{{"repositories":[]}}\n' ;;
        *"/v2/"* | *"/debug/health"*) [ "$ANSWERS" = yes ] ;;
        *) return 7 ;;
    esac
}}
sleep() {{ :; }}
"""


def container(state: Path, name: str, running: bool = True, restart: str = "always", identity: str = "old"):
    path = state / "c" / name
    path.mkdir(parents=True)
    (path / "running").write_text(f"{str(running).lower()}\n")
    (path / "restart").write_text(f"{restart}\n")
    (path / "id").write_text(f"{identity}\n")


def containers(state: Path) -> dict[str, tuple[str, str, str]]:
    """{name: (id, running, restart policy)}"""
    return {p.name: tuple((p / f).read_text().strip() for f in ("id", "running", "restart"))
            for p in sorted((state / "c").iterdir())}


LBS = ("lb1", "lb2")


def run(tmp_path: Path, plan: RegistryPlan, answers: bool, lbs: bool = False, **data) -> subprocess.CompletedProcess:
    data.setdefault("registry_data_dir", str(tmp_path / "data"))
    data.setdefault("registry_config_dir", str(tmp_path / "etc"))
    # Without the stand-in sleep, a registry that never answers would hold the script for these 30 s.
    data.setdefault("registry_ready_timeout", 30)
    hosts = [("reg1", data, {"registry_servers"})]
    if lbs:  # reg1 a replica on S3 behind two load balancers
        data.update(registry_storage="s3", registry_s3_bucket="images", registry_s3_access_key="k",
                    registry_lb_vip="10.0.0.100")
        hosts = [("reg1", data, {"registry_servers"}), ("reg2", data, {"registry_servers"}),
                 *((name, {**data, "ssh_hostname": f"10.0.0.{11 + i}"}, {"registry_lb"}) for i, name in enumerate(LBS))]
    settings = validate_hosts(hosts, check_files=False)["reg1"]
    desired = desired_container(settings, settings.registry_config_path, "a" * 64)
    # As tasks/registry_server.py names them.
    aside = f"registry{KEPT_SUFFIX}-20261205000000" if plan.adopts else f"registry{ASIDE_SUFFIX}"
    script = run_script(settings, plan, desired, aside=aside, notice=plan.notice("registry", aside))
    stand_ins = STAND_INS.format(state=tmp_path / "docker", answers="yes" if answers else "no")
    start = time.monotonic()
    result = subprocess.run(["sh", "-c", stand_ins + script], capture_output=True, text=True, timeout=30)
    # Each case takes some hundredths of a second; the bound is loose so a loaded machine cannot fail
    # it, and still far below the ready timeout a real wait would take.
    assert time.monotonic() - start < 10, "the stand-ins make every wait instant"
    return result


@pytest.fixture
def state(tmp_path):
    (tmp_path / "docker" / "c").mkdir(parents=True)
    return tmp_path / "docker"


RECREATE = RegistryPlan("recreate", ("ports: 5000->5000 -> 5001->5000",), previous_restart="always")
ADOPT = RegistryPlan("adopt", ("found image registry:2",), previous_restart="unless-stopped")


def test_a_replacement_that_never_answers_is_rolled_back_to_the_previous_container(tmp_path, state):
    container(state, "registry")
    result = run(tmp_path, RECREATE, answers=False)
    assert result.returncode == 1
    assert "the new registry container never answered" in result.stderr
    assert "the previous container registry runs again, unchanged" in result.stderr
    # The old container, under its own name, running, with its restart policy; the new one is gone.
    assert containers(state) == {"registry": ("old", "true", "always")}
    calls = (state / "calls").read_text()
    assert calls.index("docker rename registry registry.regdeploy-old") \
        < calls.index("docker run -d --name registry") < calls.index("docker rename registry.regdeploy-old registry")


def test_a_replacement_that_answers_removes_regdeploys_previous_container(tmp_path, state):
    container(state, "registry")
    result = run(tmp_path, RECREATE, answers=True)
    assert result.returncode == 0, result.stderr
    assert containers(state) == {"registry": ("new", "true", "always")}


def test_an_adopted_container_that_stays_stopped_is_kept_aside(tmp_path, state):
    container(state, "registry", restart="unless-stopped", identity="by-hand")
    result = run(tmp_path, ADOPT, answers=True)
    assert result.returncode == 0, result.stderr
    # Never removed: kept stopped, restart policy no, so it stays as the operator left its data.
    assert containers(state) == {"registry": ("new", "true", "always"),
                                 f"registry{KEPT_SUFFIX}-20261205000000": ("by-hand", "false", "no")}


def test_an_adopted_container_whose_replacement_fails_gets_its_name_and_restart_policy_back(tmp_path, state):
    container(state, "registry", restart="unless-stopped", identity="by-hand")
    result = run(tmp_path, ADOPT, answers=False)
    assert result.returncode == 1
    assert containers(state) == {"registry": ("by-hand", "true", "unless-stopped")}


def test_a_stopped_previous_container_is_not_started_by_the_rollback(tmp_path, state):
    container(state, "registry", running=False)
    result = run(tmp_path, RECREATE, answers=False)
    assert result.returncode == 1 and "runs again" not in result.stderr
    assert containers(state) == {"registry": ("old", "false", "always")}


def test_a_copy_the_registry_does_not_serve_stops_the_move_before_anything_is_set_aside(tmp_path, state):
    # A volume with one tag; the verifier on the copy serves an empty catalog.
    source = tmp_path / "volume"
    link = source / "docker/registry/v2/repositories/team/app/_manifests/tags/1/current/link"
    link.parent.mkdir(parents=True)
    link.write_text("sha256:" + "1" * 64)
    target = tmp_path / "data"
    plan = RegistryPlan("adopt", ("found image registry:2",), previous_restart="always",
                        migration=Migration(Storage("volume", str(source), "v"), str(target), repositories=1,
                                            bytes=71, redo_partial=False))
    container(state, "registry", identity="by-hand")
    result = run(tmp_path, plan, answers=True)
    assert result.returncode == 1
    assert "does not serve every tag with the same digest" in result.stderr
    assert "team/app 1 sha256:" + "1" * 64 in result.stderr  # what was expected, said
    # Never set aside, running again as it was; the volume untouched; the copy marked unfinished.
    assert containers(state) == {"registry": ("by-hand", "true", "always")}
    assert link.read_text() == "sha256:" + "1" * 64
    assert (target / MIGRATION_MARKER).exists()
    assert (target / "docker/registry/v2/repositories/team/app/_manifests/tags/1/current/link").exists()
    assert "docker rename" not in (state / "calls").read_text()


def test_a_target_that_is_not_empty_is_never_merged_into(tmp_path, state):
    source = tmp_path / "volume"
    (source / "docker").mkdir(parents=True)
    target = tmp_path / "data"
    (target / "someone-elses").mkdir(parents=True)
    plan = RegistryPlan("adopt", ("found image registry:2",), previous_restart="always",
                        migration=Migration(Storage("volume", str(source), "v"), str(target), repositories=0,
                                            bytes=0, redo_partial=False))
    container(state, "registry", identity="by-hand")
    result = run(tmp_path, plan, answers=True)
    assert result.returncode == 1 and "is no longer empty" in result.stderr
    assert sorted(p.name for p in target.iterdir()) == ["someone-elses"]
    assert containers(state) == {"registry": ("by-hand", "true", "always")}


def behind_two_lbs(state: Path, deny: bool = False) -> None:
    (state / "lb-state").write_text("UP\n")
    if deny:
        (state / "lb-deny").touch()


def lb_calls(state: Path) -> list[str]:
    """The script's calls in order, as what they did: an admin action per load balancer, docker's."""
    out = []
    for line in (state / "calls").read_text().splitlines():
        if "action=" in line:
            out.append(f"{line.split('action=')[1].split()[0]} {line.split()[-1]}")
        elif line.startswith(("docker stop", "docker run")):
            out.append(" ".join(line.split()[:2]))
    return out


def test_a_replica_drains_on_every_load_balancer_before_it_stops_and_is_ready_again_after(tmp_path, state):
    container(state, "registry")
    behind_two_lbs(state)
    result = run(tmp_path, RECREATE, answers=True, lbs=True)
    assert result.returncode == 0, result.stderr
    assert lb_calls(state) == ["drain http://10.0.0.11:8404/stats", "drain http://10.0.0.12:8404/stats",
                               "docker stop", "docker run",
                               "ready http://10.0.0.11:8404/stats", "ready http://10.0.0.12:8404/stats"]
    assert "every load balancer sends reg1 requests" in result.stdout


def test_a_replica_no_load_balancer_lets_drain_is_never_stopped(tmp_path, state):
    container(state, "registry")
    behind_two_lbs(state, deny=True)
    result = run(tmp_path, RECREATE, answers=True, lbs=True)
    assert result.returncode == 1
    assert "did not set reg1 to drain (http://lb/stats;st=DENY)" in result.stderr
    assert "docker stop" not in (state / "calls").read_text()
    assert containers(state) == {"registry": ("old", "true", "always")}


def test_a_drained_replica_whose_replacement_fails_runs_again_and_is_ready_again(tmp_path, state):
    container(state, "registry")
    behind_two_lbs(state)
    result = run(tmp_path, RECREATE, answers=False, lbs=True)
    assert result.returncode == 1
    assert containers(state) == {"registry": ("old", "true", "always")}
    assert lb_calls(state)[-2:] == ["ready http://10.0.0.11:8404/stats", "ready http://10.0.0.12:8404/stats"]
    assert "the load balancers send it requests again" in result.stderr
