"""The registry server: the registry container as configured (testinfra's docker module), its
storage, the API."""


def _registry(server_host, fleet):
    return server_host.docker(fleet.server.settings.registry_container_name)


def test_registry_container_runs_with_restart_policy_and_port(server_host, fleet):
    settings = fleet.server.settings
    registry = _registry(server_host, fleet)
    assert registry.is_running
    container = registry.inspect()
    assert container["HostConfig"]["RestartPolicy"]["Name"] == settings.registry_restart_policy.split(":")[0]
    bindings = container["HostConfig"]["PortBindings"]["5000/tcp"]
    assert [b["HostPort"] for b in bindings] == [str(settings.registry_port)]


def test_registry_storage_is_the_host_directory(server_host, fleet):
    settings = fleet.server.settings
    mounts = {m["Destination"]: m for m in _registry(server_host, fleet).inspect()["Mounts"]}
    assert mounts["/var/lib/registry"]["Type"] == "bind"
    assert mounts["/var/lib/registry"]["Source"] == settings.registry_data_dir
    assert server_host.file(settings.registry_data_dir).is_directory


def test_registry_api_answers(server_host, fleet):
    port = fleet.server.settings.registry_port
    status = server_host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' http://127.0.0.1:{port}/v2/")
    assert status == "200"
