"""The deploy lock's script (templates/parts/deploy-lock.sh.j2), run for real: each contender is a shell under
a stand-in SSH session (a copy of sh named sshd-*, which is what the lock walks up to), all on a lock
file under tmp_path."""

import shutil
import subprocess
import time

import pytest

from regdeploy.rendering import render


@pytest.fixture
def contender(tmp_path):
    """contender(name, then, timeout) starts a session `sshd-NAME` whose shell takes the lock, prints
    "taken WAITED" or "busy WAITED HOLDER", then runs `then` (shell) while the session lives."""
    sessions = []

    def start(name: str, then: str = "", timeout: int = 0) -> subprocess.Popen:
        session = tmp_path / f"sshd-{name}"
        shutil.copy("/bin/sh", session)
        script = render("deploy-lock.sh.j2", lock=str(tmp_path / "lock"), lock_timeout=timeout,
                        holder=f"run {name}")
        script += ('\nif take_deploy_lock; then echo "taken $waited"; else echo "busy $waited $lock_holder"; fi\n'
                   + then + "\n")
        # `; :` keeps the session's own process alive above the shell (no exec of the last command).
        process = subprocess.Popen([str(session), "-c", 'sh -c "$0"; :', script], stdout=subprocess.PIPE,
                                   text=True)
        sessions.append(process)
        return process

    yield start
    for process in sessions:
        process.kill()
        process.wait()


def first_line(process: subprocess.Popen) -> str:
    return process.stdout.readline().strip()


def test_a_second_run_finds_the_lock_held_and_names_its_holder(contender):
    assert first_line(contender("a", "sleep 30")) == "taken 0"
    assert first_line(contender("b")) == "busy 0 run a"


def test_the_lock_is_free_once_its_holders_connection_ends(contender):
    holder = contender("a", "sleep 1.5")
    assert first_line(holder) == "taken 0"
    waiting = contender("b", timeout=20)
    line = first_line(waiting)
    assert line.startswith("taken ") and 1 <= int(line.split()[1]) <= 20
    # A connection killed outright (no clean-up at all) frees it too.
    holder = contender("c", "sleep 30")
    time.sleep(0.1)
    assert first_line(waiting) == "" and waiting.wait() == 0  # b's session has ended
    assert first_line(holder) == "taken 0"
    holder.kill()
    holder.wait()
    assert first_line(contender("d")) == "taken 0"


def test_the_connection_holding_the_lock_takes_it_again_and_no_child_inherits_the_guard(contender, tmp_path):
    # A second script on the same connection (a backup after the deploy's fact) goes on at once. The
    # guard's descriptor is closed once the lock is taken: a long-lived child holding the flock would
    # keep every other run from even asking who holds the lock.
    session = contender("a", 'take_deploy_lock && echo "again $waited"\n'
                             '[ -e /proc/$$/fd/9 ] && echo "guard open" || echo "guard closed"\nsleep 30')
    assert [first_line(session) for _ in range(3)] == ["taken 0", "again 0", "guard closed"]
    # The guard is free: another run gets its answer (busy) at once, and can ask again.
    started = time.monotonic()
    assert first_line(contender("b")) == "busy 0 run a"
    assert time.monotonic() - started < 5
    assert subprocess.run(["flock", "-n", str(tmp_path / "lock.guard"), "true"]).returncode == 0


def test_a_lock_file_that_cannot_be_written_is_not_taken(contender, tmp_path):
    (tmp_path / "lock").mkdir()  # `> lock` fails
    assert first_line(contender("a")) == "busy 0"
