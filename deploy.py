"""regdeploy from a checkout: `pyinfra inventory.py deploy.py` (installed with pip: `pyinfra
INVENTORY regdeploy.deploys.registry`). What it does: regdeploy/deploys.py."""

import os
import sys

# pyinfra turns Python's bytecode cache off for everything it runs (sys.dont_write_bytecode), so
# regdeploy's modules would be compiled anew on every run: ~60 ms of the controller's CPU before the
# first host is asked anything. They are cached as Python does by default, unless the operator said no.
if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
    sys.dont_write_bytecode = False

from regdeploy.deploys import registry  # noqa: E402 (after the cache is back on)

registry()
