"""regdeploy: a private Docker registry and its clients, provisioned with pyinfra."""
