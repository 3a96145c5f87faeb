"""Your hosts. `pyinfra inventory.py deploy.py` provisions them.

Replace the example names with your machines (names or addresses pyinfra can SSH to). The
registry's address, as clients use it, is the server's name here plus `registry_port`
(`registry.example.com:5000`), unless `registry_host` says otherwise. Variables and defaults:
regdeploy/variables.py and the README's table; put shared ones in group_data/all.py.

To try regdeploy without machines of your own, use the lab: `python -m lab demo` writes and uses
.lab/regdeploy-lab/inventory.py.
"""

# Exactly one registry server. It is also configured as a Docker client of itself.
registry_servers = [
    ("registry.example.com", {
        "ssh_user": "root",
        # Air-gapped? Ship the image as a `docker save` tarball instead of pulling registry:2:
        # "registry_image_archive": "images/registry-2.tar",
    }),
]

# Every machine that pushes to or pulls from the registry. Add a host here and run
# `pyinfra inventory.py deploy.py --limit NEW-HOST` to provision just that one.
docker_clients = [
    ("build1.example.com", {"ssh_user": "root"}),
    ("app1.example.com", {"ssh_user": "root"}),
]
