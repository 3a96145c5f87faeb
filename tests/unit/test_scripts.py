"""Every script regdeploy renders (tests/scripts.py's corpus) matches its golden file and passes
shellcheck; every shell template is in the corpus, run or included."""

from __future__ import annotations

import re
import shutil
import subprocess

from tests import scripts


def test_the_golden_files_match_the_templates():
    stale = scripts.stale()
    assert not stale, f"stale golden files {stale}: review the change, then run python -m tests.scripts --update"


def test_every_rendered_script_passes_shellcheck(tmp_path):
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: apt-get install shellcheck (lab/bootstrap.sh installs it)"
    names = []
    for name, text in scripts.corpus().items():
        if name.endswith(".sh"):
            (tmp_path / name).write_text(text)
            names.append(name)
    # POSIX sh: pyinfra runs every command with sh -c (dash on Debian).
    result = subprocess.run([shellcheck, "--shell=sh", "--format=gcc", *names], cwd=tmp_path, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(names) > 50


def test_every_shell_template_is_in_the_corpus():
    templates = scripts.shell_templates()
    included = {name for path in scripts.template_paths().values()
                for name in re.findall(r'{%-?\s*include "([^"]+)"', path.read_text())}
    rendered = {name.split(".")[0] + ".sh.j2" for name in scripts.corpus()}
    assert templates - rendered - included == set()
    assert {"run-registry.sh.j2", "docker-host-state.sh.j2", "registry-gc.sh.j2"} <= rendered


def test_template_names_are_unique_across_their_groups():
    from regdeploy.rendering import TEMPLATE_GROUPS, TEMPLATES_DIR

    names = [p.name for group in TEMPLATE_GROUPS for p in (TEMPLATES_DIR / group).glob("*.j2")]
    assert len(names) == len(set(names)), "a template is named without its folder: names must not repeat"
    assert {p.parent.name for p in TEMPLATES_DIR.rglob("*.j2")} == set(TEMPLATE_GROUPS)


def test_every_script_flushes_a_file_to_disk_before_it_takes_its_name():
    """A file a deploy writes is staged, flushed (sync FILE: fsync), then renamed or linked into place:
    a power cut right after the run leaves the old file or the new one, never an empty one (ext4 may
    write the rename before the data). Found by powering a load balancer VM off after a deploy. The
    registry's config.yml, written in place (its container mounts that very file) by gc, prune and
    backup, is flushed before the registry restarts with it."""
    swaps = {}
    for name, text in scripts.corpus().items():
        lines = text.splitlines()
        for number, line in enumerate(lines):
            # A staged file renamed or linked into place; config.yml written in place (the registry's
            # container mounts that very file): flushed before the swap or the restart.
            if re.search(r'\b(mv -f|ln) "\$staged"', line):
                before = "\n".join(lines[max(0, number - 3):number + 1])
                swaps[f"{name}:{number + 1}"] = 'sync "$staged"' in before
            elif re.search(r'> "\$config"', line):
                end = number
                if heredoc := re.search(r"<<'(\w+)'", line):  # its content, then what follows
                    end = next(i for i in range(number + 1, len(lines)) if lines[i].endswith(heredoc[1]))
                swaps[f"{name}:{number + 1}"] = 'sync "$config"' in "\n".join(lines[number:end + 2])
    assert swaps and all(swaps.values()), [place for place, flushed in swaps.items() if not flushed]
    assert {name.split(".")[0].split(":")[0] for name in swaps} >= {
        "put-file", "apply-daemon-json", "apply-containerd-config", "apply-lb-config", "daemon-json-before-install",
        "registry-gc", "registry-backup", "replica-maintenance"}
