"""The registry container decision, table-tested: `docker inspect` fixtures in, plans out, no host."""

import pytest

from regdeploy.registry_plan import (
    SPEC_LABEL, DesiredContainer, PlanError, ServerState, plan_registry,
)

CONFIG_SHA = "c" * 64
VOLUME = "43c4" + "0" * 60
DESIRED = DesiredContainer(name="registry", host_port=5000, data_dir="/var/lib/registry",
                           config_path="/etc/regdeploy/config.yml", config_target="/etc/docker/registry/config.yml",
                           restart_policy="always", spec_hash="s" * 64)


def bind(source, target, rw=True):
    return {"Type": "bind", "Source": source, "Destination": target, "RW": rw}


def volume(name, target="/var/lib/registry"):
    return {"Type": "volume", "Name": name, "Source": f"/var/lib/docker/volumes/{name}/_data",
            "Destination": target, "RW": True}


OURS_MOUNTS = [bind("/var/lib/registry", "/var/lib/registry"),
               bind("/etc/regdeploy/config.yml", "/etc/docker/registry/config.yml", rw=False)]


def inspect(labels=None, restart="always", retries=0, ports=None, mounts=None, image="sha256:img",
            running=True, config_image="registry:2"):
    return {
        "Image": image,
        "State": {"Running": running},
        "Config": {"Labels": {SPEC_LABEL: "s" * 64} if labels is None else labels, "Image": config_image},
        "HostConfig": {"RestartPolicy": {"Name": restart, "MaximumRetryCount": retries},
                       "PortBindings": ports if ports is not None else {"5000/tcp": [{"HostIp": "", "HostPort": "5000"}]}},
        "Mounts": OURS_MOUNTS if mounts is None else mounts,
    }


def state(container=None, **kwargs):
    values = {"config_sha256": CONFIG_SHA, "data_dir": "empty", "image_id": "sha256:img",
              "port_holders": ("registry",) if container else (), "container": container}
    values.update(kwargs)
    return ServerState(**values)


def plan(observed, desired=DESIRED):
    return plan_registry(desired, observed, CONFIG_SHA)


@pytest.mark.parametrize("observed,action,reasons", [
    (state(), "create", []),
    (state(inspect()), "none", []),
    (state(inspect(running=False), port_holders=()), "start", ["it is stopped"]),
    # Changed in place (docker update, or by hand): the label still matches, the live spec does not.
    (state(inspect(restart="no")), "recreate", ["restart policy: no -> always"]),
    (state(inspect(restart="on-failure", retries=3)), "recreate", ["restart policy: on-failure:3 -> always"]),
    (state(inspect(ports={"5000/tcp": [{"HostIp": "", "HostPort": "5001"}]})), "recreate",
     ["ports: 5001->5000 -> 5000->5000"]),
    (state(inspect(ports={"5000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "5000"}]})), "recreate",
     ["ports: 127.0.0.1:5000->5000 -> 5000->5000"]),
    (state(inspect(mounts=OURS_MOUNTS + [bind("/srv/x", "/x")])), "recreate", ["mount /x: bind /srv/x -> none"]),
    (state(inspect(image="sha256:" + "1" * 64), image_id="sha256:" + "2" * 64), "recreate",
     ["image: sha256:111111111111… -> sha256:222222222222…"]),
    (state(inspect(), config_sha256="d" * 64), "recreate",
     ["config.yml: differs from the rendered template (edited by hand, or changed)"]),
    (state(inspect(labels={SPEC_LABEL: "other"})), "recreate",
     ["spec: the image archive or another setting changed (spec hash differs)"]),
    # An interrupted earlier run: the previous container was set aside and must be cleared.
    (state(aside_left=True), "create", ["an interrupted earlier deploy left the previous container aside"]),
])
def test_plan_for_regdeploys_own_container(observed, action, reasons):
    result = plan(observed)
    assert result.action == action
    assert list(result.reasons) == reasons
    assert result.migration is None


def test_published_on_every_address_is_the_same_binding_whatever_the_engine_reports():
    for address in ("", "0.0.0.0", "::"):
        ports = {"5000/tcp": [{"HostIp": address, "HostPort": "5000"}]}
        assert plan(state(inspect(ports=ports))).action == "none"


def test_a_port_change_recreates_and_says_old_and_new():
    desired = DesiredContainer(**{**DESIRED.__dict__, "host_port": 5001})
    result = plan(state(inspect()), desired)
    assert result.action == "recreate"
    assert "ports: 5000->5000 -> 5001->5000" in result.reasons


def test_the_manuals_registry_is_adopted_and_its_anonymous_volume_moved():
    manual = inspect(labels={}, mounts=[volume(VOLUME)])
    result = plan(state(manual, storage_entries=1, storage_repositories=14, storage_bytes=3 * 2**20))
    assert result.action == "adopt"
    assert result.previous_restart == "always"
    assert result.migration.source.kind == "volume" and result.migration.source.volume == VOLUME
    assert result.migration.target == "/var/lib/registry"
    assert not result.migration.redo_partial
    assert result.summary("registry") == (
        "Adopt container 'registry' (not created by regdeploy): found image registry:2, storage in anonymous "
        "volume 43c400000000…; move 14 repositories (3.0 MiB) from anonymous volume 43c400000000… to "
        "/var/lib/registry")


@pytest.mark.parametrize("mounts,entries,moves", [
    ([volume("registry-data")], 1, "volume registry-data"),  # a named volume
    ([bind("/srv/registry", "/var/lib/registry")], 3, "/srv/registry"),  # a bind mount elsewhere
    ([bind("/var/lib/registry", "/var/lib/registry")], 3, None),  # already where regdeploy keeps it
    ([volume(VOLUME)], 0, None),  # nothing stored: nothing to move
])
def test_adoption_moves_data_only_when_it_lives_elsewhere(mounts, entries, moves):
    result = plan(state(inspect(labels={}, mounts=mounts), storage_entries=entries, storage_repositories=entries))
    assert result.action == "adopt"
    assert (result.migration.source.describe() if result.migration else None) == moves


def test_a_data_dir_change_moves_regdeploys_own_data():
    desired = DesiredContainer(**{**DESIRED.__dict__, "data_dir": "/srv/registry"})
    result = plan(state(inspect(), storage_entries=2, storage_repositories=2, storage_bytes=100), desired)
    assert result.action == "recreate"
    assert "mount /var/lib/registry: bind /var/lib/registry -> bind /srv/registry" in result.reasons
    assert result.migration.describe() == "move 2 repositories (100 B) from /var/lib/registry to /srv/registry"


def test_an_unfinished_copy_of_ours_is_redone():
    result = plan(state(inspect(labels={}, mounts=[volume(VOLUME)]), data_dir="partial", storage_entries=1))
    assert result.migration.redo_partial


@pytest.mark.parametrize("observed,message", [
    (state(inspect(labels={}, mounts=[volume(VOLUME)]), data_dir="data", storage_entries=1),
     "/var/lib/registry already holds other data; regdeploy does not merge registries"),
    (state(inspect(labels={}, mounts=[])), "keeps /var/lib/registry in its own writable layer"),
    (state(inspect(labels={}, mounts=[{"Type": "tmpfs", "Destination": "/var/lib/registry"}])),
     "keeps /var/lib/registry on tmpfs storage"),
    # The host's shell read another storage path than Docker's JSON says (a path JSON escapes): how
    # much is there is unknown, so neither "nothing to move" nor a copy may be decided.
    (state(inspect(labels={}, mounts=[volume(VOLUME)]), storage_unread="/srv/a&b"),
     "could not read that path from Docker's answer"),
    (state(port_holders=("web",)), "port 5000 is already published by container 'web'"),
    (state(inspect(), port_holders=("registry", "web")), "container 'web', which is not the registry container"),
])
def test_unsafe_situations_stop_the_deploy(observed, message):
    with pytest.raises(PlanError, match="nothing was changed") as error:
        plan(observed)
    assert message in str(error.value)


def test_the_registry_itself_and_its_aside_copy_do_not_count_as_holding_the_port():
    assert plan(state(inspect(), port_holders=("registry", "registry.regdeploy-old"))).action == "none"


def test_the_notice_names_what_is_kept_where_and_how_to_remove_it():
    adopted = plan(state(inspect(labels={}, mounts=[volume(VOLUME)]), storage_entries=1, storage_repositories=1))
    assert adopted.notice("registry", "registry-pre-regdeploy-1") == (
        "the container 'registry' found there is kept as 'registry-pre-regdeploy-1' (stopped, restart policy no); "
        f"the previous data stays in anonymous volume 43c400000000… (/var/lib/docker/volumes/{VOLUME}/_data). "
        "regdeploy never deletes either; once you no longer need them: docker rm registry-pre-regdeploy-1 && "
        f"docker volume rm {VOLUME}")
    moved = plan(state(inspect(), storage_entries=1),
                 DesiredContainer(**{**DESIRED.__dict__, "data_dir": "/srv/registry"}))
    assert moved.notice("registry", "registry.regdeploy-old").endswith(
        "the previous data stays in /var/lib/registry. regdeploy never deletes either; "
        "once you no longer need them: rm -r /var/lib/registry")
    assert plan(state(inspect(restart="no"))).notice("registry", "x") is None


WITH_COMMAND = DesiredContainer(**{**DESIRED.__dict__, "command": ("/etc/docker/registry/config.yml",)})


def with_cmd(cmd):
    container = inspect()
    container["Config"]["Cmd"] = cmd
    return container


@pytest.mark.parametrize("cmd, action, reasons", [
    # registry:2's default command is our path: a container made before regdeploy gave it stays.
    (["/etc/docker/registry/config.yml"], "none", []),
    # registry:3 run with its own default serves its built-in config, not regdeploy's: recreate.
    (["/etc/distribution/config.yml"], "recreate",
     ["command: /etc/distribution/config.yml -> /etc/docker/registry/config.yml (the config the registry reads)"]),
    (None, "recreate", ["command: (none) -> /etc/docker/registry/config.yml (the config the registry reads)"]),
])
def test_the_registry_must_serve_the_config_regdeploy_wrote(cmd, action, reasons):
    result = plan(state(with_cmd(cmd)), WITH_COMMAND)
    assert (result.action, list(result.reasons)) == (action, reasons)


WITH_DEBUG = DesiredContainer(**{**DESIRED.__dict__, "debug_binding": "127.0.0.1:"})
PORT_5000 = {"5000/tcp": [{"HostIp": "", "HostPort": "5000"}]}


@pytest.mark.parametrize("bindings, desired, action, reasons", [
    # The debug endpoint on an ephemeral loopback port, as desired: nothing to do.
    ({**PORT_5000, "5001/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}, WITH_DEBUG, "none", []),
    # A registry made before the debug endpoint existed: recreated once, saying why.
    (PORT_5000, WITH_DEBUG, "recreate", ["ports: 5000->5000 -> 5000->5000, 127.0.0.1:*->5001"]),
    # registry_metrics_port=9101 publishes it on every address.
    ({**PORT_5000, "5001/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
     DesiredContainer(**{**DESIRED.__dict__, "debug_binding": "9101"}), "recreate",
     ["ports: 5000->5000, 127.0.0.1:*->5001 -> 5000->5000, 9101->5001"]),
])
def test_the_debug_endpoint_is_part_of_the_containers_ports(bindings, desired, action, reasons):
    result = plan(state(inspect(ports=bindings)), desired)
    assert (result.action, list(result.reasons)) == (action, reasons)
