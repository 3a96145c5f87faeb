"""Host scope: a deploy touches only the hosts of regdeploy's groups. Every other inventory host
(a `databases` group in the same estate) gets no settings, so no fact and no operation, whatever its
data says, and is named once as left alone."""

import pytest

from regdeploy.settings import ConfigError, Groups, inventory_groups, left_alone, validate_hosts

SERVER = ("reg1", {}, {"registry_servers"})
CLIENT = ("c1", {}, {"docker_clients"})
# Data that would stop the deploy on a host of regdeploy's: it does not count on one left alone.
DATABASE = ("db1", {"registry_port": 0, "docker_install_source": "snap"}, {"databases"})


def test_a_host_in_none_of_the_groups_gets_no_settings_and_its_data_is_not_read():
    settings = validate_hosts([SERVER, CLIENT, DATABASE], check_files=False)
    assert set(settings) == {"reg1", "c1"}
    assert settings["c1"].registry_address == "reg1:5000"


def test_a_host_with_no_group_at_all_is_left_alone_too():
    # pyinfra puts every host in `all` (and an inventory file's list in its group): neither is ours.
    settings = validate_hosts([SERVER, ("loose", {}, set()), ("x", {}, {"all"})], check_files=False)
    assert set(settings) == {"reg1"}


def test_the_left_alone_line_names_each_such_host_and_the_groups():
    settings = validate_hosts([SERVER, CLIENT, DATABASE, ("db2", {}, {"databases"})], check_files=False)
    assert left_alone(["reg1", "c1", "db1", "db2"], settings) == (
        "regdeploy leaves alone 2 inventory hosts in none of its groups (registry_servers, docker_clients, "
        "registry_lb): db1, db2")
    assert left_alone(["reg1", "c1"], settings) == ""


def test_group_names_come_from_variables_set_for_every_host():
    names = {"registry_servers_group": "registries", "docker_clients_group": "builders",
             "registry_lb_group": "frontends"}
    hosts = [("reg1", names, {"registries"}), ("c1", names, {"builders"}),
             ("app1", names, {"docker_clients"}),  # the default name means nothing now
             ("db1", names, {"databases"})]
    settings = validate_hosts(hosts, check_files=False)
    assert set(settings) == {"reg1", "c1"}
    assert settings["reg1"].is_server and not settings["c1"].is_server
    assert settings["c1"].uses_registry
    assert inventory_groups(hosts) == Groups("registries", "builders", "frontends")
    assert "(registries, builders, frontends): app1, db1" in left_alone([h[0] for h in hosts], settings)


@pytest.mark.parametrize("hosts,message", [
    # One host's own value would move hosts in or out of the deploy: every host must agree.
    ([("reg1", {"registry_servers_group": "registries"}, {"registries"}), CLIENT],
     "hosts disagree on registry_servers_group (registries, registry_servers); set it once for every host"),
    ([SERVER, ("c1", {"docker_clients_group": "bad-name"}, {"docker_clients"})],
     "host 'c1': docker_clients_group='bad-name' is not an inventory group name"),
    ([("reg1", {"docker_clients_group": "registry_servers"}, {"registry_servers"})],
     "name three different groups, not registry_servers, registry_servers, registry_lb"),
    # A host left alone still counts for the group names (they are the whole inventory's).
    ([SERVER, ("db1", {"registry_servers_group": "databases"}, {"databases"})], "hosts disagree on"),
])
def test_group_names_are_checked_before_any_host_is_touched(hosts, message):
    with pytest.raises(ConfigError, match="nothing was changed on any host") as raised:
        validate_hosts(hosts, check_files=False)
    assert message in str(raised.value)


def test_an_inventory_with_only_other_hosts_names_the_missing_group():
    with pytest.raises(ConfigError, match="no host in the group 'registry_servers'"):
        validate_hosts([DATABASE], check_files=False)


def test_the_cli_and_the_verify_suite_see_only_the_groups_hosts(tmp_path):
    """load_fleet (the regdeploy command, the verify suite) reaches the hosts the deploy touches, no other."""
    from regdeploy.inventory import load_fleet

    inventory = tmp_path / "inventory.py"
    inventory.write_text('registry_servers = ["reg1"]\ndocker_clients = ["c1"]\n'
                         'databases = [("db1", {"registry_port": 0})]\n')
    fleet = load_fleet(str(inventory))
    assert [h.name for h in fleet.hosts] == ["reg1", "c1"]
