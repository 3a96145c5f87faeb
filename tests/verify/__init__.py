"""The verify suite: run against any deployed inventory (`pytest tests/verify --inventory=PATH`, or installed: `regdeploy -i PATH verify`)."""
