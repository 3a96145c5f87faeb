"""Which regdeploy version manages a host: recorded on every host of regdeploy's groups at the end of
a deploy there, so the next run (and `--dry`) can say which version deployed it last."""

from __future__ import annotations

from dataclasses import dataclass

# Read by the DockerHostState fact ("lines" check `managed_by`), written by the deploy's last step.
PATH = "/var/lib/regdeploy/managed-by"


@dataclass(frozen=True)
class VersionRecord:
    write: bool  # whether this run writes the record
    content: str  # what the file holds once the run is done
    reason: str  # what the run (and --dry) says


def plan_version_record(lines: list[str] | None, version: str) -> VersionRecord:
    """`lines`: the file's content as the fact read it (None: no file)."""
    wanted = f"regdeploy {version}"
    found = (lines or [""])[0].strip()
    if found == wanted:
        return VersionRecord(False, f"{wanted}\n", f"managed by {wanted}")
    if not found:
        return VersionRecord(True, f"{wanted}\n", f"not managed by regdeploy before: this run records {wanted}")
    return VersionRecord(True, f"{wanted}\n", f"managed by {found}: this run records {wanted}")
