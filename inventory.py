"""Your hosts. `pyinfra inventory.py deploy.py` provisions them.

Replace the example names with your machines (names or addresses pyinfra can SSH to). The
registry's address, as clients use it, is the server's name here plus `registry_port`
(`registry.example.com:5000`), unless `registry_host` says otherwise. Variables and defaults:
docs/reference/variables.md (generated from regdeploy/variables.py); put shared ones in group_data/all.py.

To try regdeploy without machines of your own, use the lab: `python -m lab demo` writes and uses
.lab/regdeploy-lab/inventory.py.
"""

# One registry server (also configured as a Docker client of itself), or several replicas on a shared
# S3 bucket (registry_storage="s3", registry_s3_*) with a host in `registry_lb` below:
# docs/howto/replicas.md.
registry_servers = [
    ("registry.example.com", {
        "ssh_user": "root",
        # Air-gapped? Ship the image as a `docker save` tarball instead of pulling registry:2:
        # "registry_image_archive": "images/registry-2.tar",
    }),
]

# With several replicas: the host that runs haproxy in front of them; clients use its name.
# registry_lb = [("registry-lb.example.com", {"ssh_user": "root"})]

# Every machine that pushes to or pulls from the registry. Add a host here and run
# `pyinfra inventory.py deploy.py --limit NEW-HOST` to provision just that one.
docker_clients = [
    ("build1.example.com", {"ssh_user": "root"}),
    ("app1.example.com", {"ssh_user": "root"}),
]

# Hosts of your estate that are not regdeploy's stay in the same inventory: the deploy says once that it
# leaves them alone and never touches them. A fuller estate (group_data, secrets): examples/estate/.
databases = [
    ("db1.example.com", {"ssh_user": "root"}),
]
