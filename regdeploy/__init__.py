"""regdeploy: a private Docker registry and its clients, provisioned with pyinfra."""

# The one place the version is written: the package's metadata (pyproject.toml), `regdeploy --version`
# and the stamp on every managed host read it from here. CHANGELOG.md says what each version changed.
__version__ = "0.2.0"
