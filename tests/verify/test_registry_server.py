"""The registry server: the registry container as configured (testinfra's docker module), its
storage, its files in each mode, the API as clients see it."""

import shlex
import warnings

import yaml

from regdeploy import pki, registry_files
from regdeploy.registry_plan import DEBUG_PORT, SPEC_LABEL
from regdeploy.settings import cache_settings


def _registry(server_host, fleet):
    return server_host.docker(fleet.server.settings.registry_container_name)


def _status(server_host, url: str, *options: str) -> str:
    """HTTP status of GET url from the server (curl `options` already quoted)."""
    return server_host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' {' '.join(options)} {shlex.quote(url)}")


def _loopback(fleet) -> list[str]:
    settings = fleet.server.settings
    api = registry_files.loopback_api(settings)
    return ["--connect-to", shlex.quote(f"{api.connect}:127.0.0.1:{settings.registry_port}")]


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
    if settings.registry_storage == "s3":
        # Everything is in the bucket: nothing may land on a replica's disk.
        assert server_host.check_output(f"ls -A {shlex.quote(settings.registry_data_dir)}") == ""


def test_registry_config_says_what_the_settings_say(server_host, fleet):
    settings = fleet.server.settings
    config = yaml.safe_load(server_host.file(settings.registry_config_path).content_string)
    assert config["storage"]["delete"]["enabled"] == settings.registry_allow_delete
    assert ("tls" in config["http"]) == settings.registry_tls
    assert ("auth" in config) == settings.registry_auth
    storage = config["storage"]
    if settings.registry_storage == "s3":
        assert (storage["s3"]["bucket"], storage["s3"].get("regionendpoint", "")) == \
            (settings.registry_s3_bucket, settings.registry_s3_endpoint)
        assert storage["redirect"]["disable"] is True and "filesystem" not in storage
        # No cache in a replica's memory; with registry_lb_cache the one they share, at the load
        # balancers' address.
        cache = settings.blob_cache_address
        assert storage.get("cache") == ({"blobdescriptor": "redis"} if cache else None)
        assert config.get("redis", {}).get("addr") == (cache or None)
    else:
        assert storage["filesystem"]["rootdirectory"] == "/var/lib/registry" and "s3" not in storage
    # Replicas share one http.secret (an upload may go on on another replica); one server makes its own.
    assert ("secret" in config["http"]) == settings.several_replicas


def test_registry_api_answers_with_the_deploys_credentials(server_host, fleet):
    api = registry_files.loopback_api(fleet.server.settings)
    if not api.token:
        assert _status(server_host, f"{api.base}/v2/", *_loopback(fleet), api.options) == "200"
        return
    # registry_access: a token from the token service (asked as regdeploy's scripts ask it), handed to
    # curl on stdin, then the registry answers with it, and refuses the password itself.
    sed = r"""sed -n 's/.*"token": *"\([^"]*\)".*/\1/p'"""
    script = (f"token=$(curl -fsS --connect-to {shlex.quote(api.token_connect)} {api.token_options} "
              f"{shlex.quote(api.token + '?service=' + api.token_service)} | {sed}) && [ -n \"$token\" ] && "
              "printf 'header = \"Authorization: Bearer %s\"\\n' \"$token\" | "
              f"curl -s -o /dev/null -w '%{{http_code}}' -K - {' '.join(_loopback(fleet))} {api.options} "
              f"{shlex.quote(api.base + '/v2/')}")
    assert server_host.check_output(script) == "200"
    credentials = f"--config {shlex.quote(registry_files.api_credentials_path(fleet.server.settings))}"
    assert _status(server_host, f"{api.base}/v2/", *_loopback(fleet), api.options, credentials) == "401"


def test_the_token_service_runs_where_rules_are_set(server_host, fleet):
    settings = fleet.server.settings
    unit = server_host.service(registry_files.TOKEN_UNIT)
    if not settings.registry_access:
        assert not server_host.file(registry_files.TOKEN_UNIT_PATH).exists, "a token service without registry_access"
        return
    assert unit.is_running and unit.is_enabled
    assert server_host.socket(f"tcp://0.0.0.0:{settings.registry_token_port}").is_listening


def test_anonymous_requests_are_refused_when_auth_is_on(server_host, fleet):
    settings = fleet.server.settings
    api = registry_files.loopback_api(settings)
    ca = [f"--cacert {shlex.quote(registry_files.client_ca_path(settings))}"] if settings.registry_tls else []
    assert _status(server_host, f"{api.base}/v2/", *_loopback(fleet), *ca) == ("401" if settings.registry_auth else "200")


def test_plain_http_is_refused_when_tls_is_on(server_host, fleet):
    settings = fleet.server.settings
    status = _status(server_host, f"http://{settings.registry_address}/v2/", *_loopback(fleet))
    # The registry answers plain HTTP on its TLS port with 400 ("client sent an HTTP request to an HTTPS server").
    assert status == ("400" if settings.registry_tls else "200")


def test_secret_files_are_root_only(server_host, fleet):
    settings = fleet.server.settings
    secrets = ([registry_files.tls_key_path(settings)] if settings.registry_tls else []) + (
        [registry_files.htpasswd_path(settings), registry_files.api_credentials_path(settings)]
        if settings.registry_auth else []) + (
        # The S3 key and the shared http.secret are in config.yml.
        [settings.registry_config_path] if registry_files.holds_secrets(settings) else [])
    for path in secrets:
        file = server_host.file(path)
        assert (file.is_file, file.mode, file.user) == (True, 0o600, "root"), path
    if not settings.registry_tls:
        assert not server_host.file(registry_files.tls_dir(settings)).exists
    if not settings.registry_auth:
        assert not server_host.file(registry_files.api_credentials_path(settings)).exists


def test_certificates_are_valid_and_a_near_expiry_is_warned_about(server_host, fleet):
    """The server's certificate, the CA the hosts trust and the token signing certificate: none expired
    (a failure), and a warning for each that expires within 30 days."""
    settings = fleet.server.settings
    if not settings.registry_tls:
        return
    paths = [registry_files.tls_cert_path(settings), registry_files.client_ca_path(settings)]
    if settings.registry_access:
        paths.append(registry_files.token_cert_path(settings))
    for path in paths:
        for subject, expiry in pki.expiring(server_host.file(path).content_string):
            left = expiry - pki._now()
            assert left.total_seconds() > 0, f"{path}: {subject} expired on {expiry:%Y-%m-%d}"
            warnings.warn(f"{path} on {fleet.server.name}: {subject} expires on {expiry:%Y-%m-%d}, in {left.days} days; "
                          "a deploy re-issues a certificate regdeploy made (yours: replace it)", UserWarning)


def test_debug_endpoint_reports_health_and_metrics_on_loopback_unless_published(server_host, fleet):
    settings = fleet.server.settings
    name = shlex.quote(settings.registry_container_name)
    published = server_host.check_output(f"docker port {name} {DEBUG_PORT}/tcp").splitlines()
    if settings.registry_metrics_port:
        assert f"0.0.0.0:{settings.registry_metrics_port}" in published
    else:
        # Not on the network: the loopback address only.
        assert published and all(line.startswith("127.0.0.1:") for line in published)
    debug = published[0]
    assert _status(server_host, f"http://{debug}/debug/health") == "200"
    metrics = server_host.check_output(f"curl -fsS http://{debug}/metrics")
    assert "# TYPE registry_" in metrics, metrics[:500]


def test_the_pull_through_cache_runs_read_only_when_configured_and_not_otherwise(server_host, fleet):
    settings = fleet.server.settings
    name = shlex.quote(settings.registry_proxy_container_name)
    if not settings.registry_proxy_remote_url:
        label = server_host.run(f"docker container inspect -f '{{{{index .Config.Labels \"{SPEC_LABEL}\"}}}}' {name}")
        assert label.rc != 0 or label.stdout.strip() in ("", "<no value>"), \
            "a pull-through cache regdeploy made is still there though registry_proxy_remote_url is empty"
        return
    assert server_host.docker(settings.registry_proxy_container_name).is_running
    config = yaml.safe_load(server_host.file(cache_settings(settings).registry_config_path).content_string)
    assert config["proxy"]["remoteurl"] == settings.registry_proxy_remote_url
    assert server_host.file(cache_settings(settings).registry_config_path).mode == 0o600
    scheme = "https" if settings.registry_tls else "http"
    ca = ["--cacert", shlex.quote(registry_files.client_ca_path(cache_settings(settings)))] \
        if settings.registry_tls else []
    url = f"{scheme}://{settings.registry_host}:{settings.registry_proxy_port}"
    connect = ["--connect-to", shlex.quote(f"{settings.registry_host}:{settings.registry_proxy_port}:127.0.0.1:"
                                           f"{settings.registry_proxy_port}")]
    assert _status(server_host, f"{url}/v2/", *connect, *ca) == "200"
    # A proxy refuses pushes.
    assert server_host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' -X POST {' '.join(connect + ca)} "
                                    f"{shlex.quote(url + '/v2/regdeploy/verify/blobs/uploads/')}") == "405"
