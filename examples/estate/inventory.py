"""A whole small estate in one inventory: regdeploy touches only its groups' hosts.

    cd examples/estate
    pyinfra inventory.py regdeploy.deploys.registry --dry     # what each host would get; nothing done
    pyinfra -y inventory.py regdeploy.deploys.registry

Replace the example names with your machines. Settings every host shares are in group_data/all.py;
the passwords stay out of git (.gitignore), in the environment or .regdeploy/passwords (mode 0600).
"""

# The registry server (a Docker client of itself too).
registry_servers = [("registry.example.com", {"ssh_user": "root"})]

# What pushes (CI) and what pulls (the application hosts). A host added later: add it here, then
# `pyinfra -y inventory.py regdeploy.deploys.registry --limit NEW-HOST`.
docker_clients = [
    ("ci1.example.com", {"ssh_user": "deploy", "_sudo": True}),   # a non-root login, through sudo
    ("app1.example.com", {"ssh_user": "root"}),
    # A Kubernetes node: containerd, no Docker. regdeploy writes its hosts.toml and installs nothing.
    ("k8s1.example.com", {"ssh_user": "root", "docker_install_source": "none", "client_runtimes": ["containerd"]}),
]

# Not regdeploy's: the deploy says once that it leaves this host alone, and never touches it.
databases = [("db1.example.com", {"ssh_user": "root"})]
