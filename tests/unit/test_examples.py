"""The example estate (examples/estate) is a valid inventory as pyinfra loads it: its group data is
read, every regdeploy host validates, and the host in none of regdeploy's groups is left alone."""

from __future__ import annotations

import os
from pathlib import Path

from regdeploy.inventory import load_fleet
from regdeploy.settings import left_alone

ESTATE = Path(__file__).resolve().parents[2] / "examples" / "estate"


def test_the_example_estate_validates_and_leaves_its_database_alone(monkeypatch):
    monkeypatch.chdir(ESTATE)
    monkeypatch.setenv("REGDEPLOY_PASSWORD_CI", "an example password")
    monkeypatch.setenv("REGDEPLOY_PASSWORD_READER", "another example password")
    fleet = load_fleet(str(ESTATE / "inventory.py"))  # validates every host: a bad value raises
    names = {h.name for h in fleet.hosts}
    assert names == {"registry.example.com", "ci1.example.com", "app1.example.com", "k8s1.example.com"}
    settings = {h.name: h.settings for h in fleet.hosts}
    # group_data/all.py reached every host.
    assert all(s.registry_tls and s.registry_auth and s.registry_login_user == "reader" for s in settings.values())
    assert settings["k8s1.example.com"].client_runtimes == ("containerd",)
    message = left_alone(["registry.example.com", "ci1.example.com", "app1.example.com", "k8s1.example.com",
                          "db1.example.com"], settings)
    assert message.endswith(": db1.example.com")
    assert os.path.exists(ESTATE / ".gitignore") and ".regdeploy/" in (ESTATE / ".gitignore").read_text()
