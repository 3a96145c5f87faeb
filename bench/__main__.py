"""`python -m bench`: time regdeploy on the lab and print a table (and write JSON).

Every figure is a whole-process wall time (and the controller's peak RSS and CPU time, from GNU
time) over several runs, reported as median and range. Ratios are computed pair by pair — the two
commands of a pair run back to back — because this machine is shared and noisy: absolute times
drift between minutes, ratios of neighbours much less.

- floor: `pyinfra INVENTORY exec -- true`, one connection and one command per host;
- no-op: `pyinfra INVENTORY deploy.py` on a converged fleet, paired with the floor;
- cold: the deploy on fresh hosts, paired with the unavoidable work done by hand on identical
  fresh hosts, in parallel, over SSH: the manual's steps at their cheapest (daemon.json trusting the
  registry written first, then apt-get update + install docker.io, on every host; upload + `docker
  load` of the registry image and its `docker run` on the server);
- add one client: `--limit` deploy of a new client joining a converged fleet.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from lab import config as lab_config
from lab import hosts as lab_hosts
from lab import ssh as lab_ssh
from lab import image as lab_image
from regdeploy.variables import DEFAULTS

REPO_ROOT = Path(__file__).resolve().parent.parent
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
BENCH_LAB = lab_config.default_lab("regdeploy-bench")
# A second, small fleet beside the big one, so the scaling ratio is measured pair by pair.
SMALL_LAB = lab_config.default_lab("regdeploy-bench-small")
RESULTS_DIR = REPO_ROOT / "bench" / "results"
# What the lab's clients call the registry (the server's inventory name, regdeploy's default port),
# and where the by-hand registry keeps its data (regdeploy's default).
BY_HAND_PORT = DEFAULTS["registry_port"]
BY_HAND_REGISTRY = f"registry:{BY_HAND_PORT}"
BY_HAND_DATA_DIR = DEFAULTS["registry_data_dir"]


@dataclass
class Sample:
    seconds: float
    max_rss_mb: float
    # The controller's user + system CPU seconds. pyinfra runs every host in one Python thread (gevent),
    # so a run can never be shorter than this, however fast the hosts are: the part of a fleet's time
    # that hosts with CPUs of their own would not take away.
    cpu_s: float = 0.0


@dataclass
class Series:
    samples: list[Sample] = field(default_factory=list)

    def add(self, sample: Sample) -> Sample:
        self.samples.append(sample)
        return sample

    def summary(self) -> dict:
        times = [s.seconds for s in self.samples]
        return {"median_s": round(statistics.median(times), 2), "min_s": round(min(times), 2),
                "max_s": round(max(times), 2), "runs": len(times),
                "max_rss_mb": round(max(s.max_rss_mb for s in self.samples), 1),
                "cpu_median_s": round(statistics.median(s.cpu_s for s in self.samples), 2)}


# As an operator's shell runs it: Python's bytecode cache on (some CI and agent sessions turn it off
# with PYTHONDONTWRITEBYTECODE; deploy.py then compiles regdeploy's modules on every run).
OPERATOR_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(argv: list[str]) -> Sample:
    """Run argv under GNU time: wall seconds, peak RSS of the process tree's largest process, and CPU
    seconds (user + system)."""
    stats = Path("/tmp/regdeploy-bench-time")
    result = subprocess.run(["/usr/bin/time", "-o", str(stats), "-f", "%e %M %U %S", *argv], cwd=REPO_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=OPERATOR_ENV)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed:\n{result.stderr[-3000:]}")
    seconds, rss_kb, user, system = stats.read_text().split()[-4:]
    return Sample(float(seconds), int(rss_kb) / 1024, float(user) + float(system))


def deploy(*extra: str, lab: lab_config.Lab = BENCH_LAB) -> Sample:
    return timed([PYINFRA, "-y", str(lab.inventory_path), "deploy.py", *extra])


def floor() -> Sample:
    return timed([PYINFRA, "-y", str(BENCH_LAB.inventory_path), "exec", "--", "true"])


def by_hand(hostnames: list[str]) -> Sample:
    """What no tool can avoid on fresh hosts to reach the deploy's end state, done directly over SSH,
    all hosts in parallel: the manual's steps at their cheapest. daemon.json is written before Docker is
    installed, so the package starts dockerd already trusting the registry (no restart, no reload)."""
    archive = BENCH_LAB.registry_archive
    trust = ("mkdir -p /etc/docker && printf '%s\\n' "
             f"'{{\"insecure-registries\": [\"{BY_HAND_REGISTRY}\"]}}' > /etc/docker/daemon.json")
    install = ("apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive "
               "apt-get install -y -q docker.io >/dev/null")
    # The manual's `docker run`, with the deploy's storage (a bind mount) and restart policy.
    run = (f"docker run -d -p {BY_HAND_PORT}:5000 --restart=always --name registry "
           f"-v {BY_HAND_DATA_DIR}:/var/lib/registry registry:2 >/dev/null")

    def work(hostname: str) -> None:
        ssh = lab_ssh.ssh_command(BENCH_LAB, hostname)
        subprocess.run([*ssh, f"{trust} && {install}"], check=True, stdin=subprocess.DEVNULL)
        if hostname == "registry":
            with open(archive, "rb") as handle:
                subprocess.run([*ssh, "cat > /tmp/registry.tar && docker load -q -i /tmp/registry.tar >/dev/null"
                                      f" && {run}"], check=True, stdin=handle)

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(hostnames)) as pool:
        list(pool.map(work, hostnames))
    return Sample(time.monotonic() - start, 0.0)


def fresh_lab(clients: int) -> list[str]:
    lab_hosts.down(BENCH_LAB)
    return lab_hosts.up(BENCH_LAB, clients=clients)


def lab_memory_mb(lab: lab_config.Lab) -> float:
    """What the lab's hosts use of the machine's memory now: the sum of their containers' cgroup memory
    (systemd, sshd and, once deployed, dockerd, containerd and the registry in each)."""
    names = lab_hosts.running_hosts(lab)
    out = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}",
                          *[lab.container_name(n) for n in names]], capture_output=True, text=True).stdout
    units = {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}
    total = 0.0
    for line in out.splitlines():
        used = line.split()[1]  # "123.4MiB"
        number = used.rstrip("BKMGi")
        total += float(number) * units[used[len(number):]]
    return round(total, 1)


# Where a sampled frame's file belongs, for the profile's summary ("ours" is what this repository runs).
# py-spy names files relative to their sys.path entry ("gevent/hub.py", "regdeploy/facts.py").
PROFILE_GROUPS = (("ours", ("(regdeploy/", "(tasks/", "(deploy.py", "(lab/")), ("pyinfra", ("(pyinfra/",)),
                  ("paramiko", ("(paramiko/",)), ("gevent", ("(gevent/",)), ("jinja2", ("(jinja2/",)),
                  ("cryptography", ("(cryptography/", "(bcrypt/")), ("click", ("(click/",)),
                  ("import", ("(<frozen importlib",)))


def profile_noop(clients: int) -> dict:
    """One no-op deploy under py-spy (200 Hz, samples taken only while Python holds the GIL, i.e.
    the controller's Python CPU time, not its waiting): where it goes, by package — own time (the
    frame on top) and inclusive time of this repository's code."""
    raw = RESULTS_DIR / f"profile-1+{clients}.txt"
    subprocess.run([str(Path(sys.executable).parent / "py-spy"), "record", "--format", "raw", "--rate", "200", "--gil", "--output", str(raw), "--",
                    PYINFRA, "-y", str(BENCH_LAB.inventory_path), "deploy.py"], cwd=REPO_ROOT, check=True, env=OPERATOR_ENV,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    own: dict[str, int] = {}
    functions: dict[str, int] = {}
    ours_inclusive = total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        frames = stack.split(";")
        total += samples
        top = frames[-1]
        group = next((name for name, marks in PROFILE_GROUPS if any(m in top for m in marks)), "other")
        own[group] = own.get(group, 0) + samples
        functions[top] = functions.get(top, 0) + samples
        if any(any(m in f for m in PROFILE_GROUPS[0][1]) for f in frames):
            ours_inclusive += samples
    share = {name: round(100 * n / total, 1) for name, n in sorted(own.items(), key=lambda i: -i[1])}
    top = [{"function": f, "percent": round(100 * n / total, 1)}
           for f, n in sorted(functions.items(), key=lambda i: -i[1])[:15]]
    return {"clients": clients, "samples": total, "own_percent_by_package": share,
            "ours_inclusive_percent": round(100 * ours_inclusive / total, 1), "top_functions": top,
            "raw": str(raw.relative_to(REPO_ROOT))}


def ratios(pairs: list[tuple[Sample, Sample]]) -> dict:
    values = [a.seconds / b.seconds for a, b in pairs]
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2)}


def bench_fleet(clients: int, runs: int, cold_runs: int) -> dict:
    print(f"bench: 1+{clients} hosts", file=sys.stderr, flush=True)
    cold, manual, cold_pairs = Series(), Series(), []
    if not cold_runs:
        fresh_lab(clients)
    for _ in range(cold_runs):
        hostnames = fresh_lab(clients)
        hand = manual.add(by_hand(hostnames))
        fresh_lab(clients)
        cold_pairs.append((cold.add(deploy()), hand))

    noop, base, noop_pairs = Series(), Series(), []
    deploy()  # converge (the last cold run already did; this makes it certain)
    for _ in range(runs):
        f = base.add(floor())
        noop_pairs.append((noop.add(deploy()), f))

    result = {"clients": clients, "floor": base.summary(), "noop": noop.summary(),
              "noop_over_floor": ratios(noop_pairs), "lab_memory_mb": lab_memory_mb(BENCH_LAB)}
    if cold_pairs:
        result.update(cold=cold.summary(), by_hand=manual.summary(), cold_over_by_hand=ratios(cold_pairs))
    return result


def bench_scaling(small: int, large: int, runs: int) -> dict:
    """No-op of 1+large over no-op of 1+small, the two fleets converged side by side, runs alternating."""
    print(f"bench: no-op 1+{large} against 1+{small}, pair by pair", file=sys.stderr, flush=True)
    lab_hosts.down(SMALL_LAB)
    lab_hosts.up(SMALL_LAB, clients=small)
    if len(lab_hosts.running_hosts(BENCH_LAB)) != large + 1:
        fresh_lab(large)
    deploy(lab=SMALL_LAB)
    deploy()
    small_series, large_series, pairs = Series(), Series(), []
    try:
        for _ in range(runs):
            s = small_series.add(deploy(lab=SMALL_LAB))
            pairs.append((large_series.add(deploy()), s))
    finally:
        lab_hosts.down(SMALL_LAB)
    return {"small": small, "large": large, "noop_small": small_series.summary(),
            "noop_large": large_series.summary(), "large_over_small": ratios(pairs)}


def bench_add_client(clients: int, runs: int) -> dict:
    print(f"bench: add one client to a converged 1+{clients}", file=sys.stderr, flush=True)
    added, full_noop, pairs = Series(), Series(), []
    for run in range(runs):
        fresh_lab(clients)
        deploy()
        lab_hosts.up(BENCH_LAB, clients=clients + 1)
        new = f"client{clients + 1}"
        a = added.add(deploy("--limit", new))
        pairs.append((a, full_noop.add(deploy())))
    return {"clients": clients, "add_one_with_limit": added.summary(),
            "noop_after": full_noop.summary(), "add_over_noop": ratios(pairs)}


def controller_bound(results: dict) -> dict:
    """How short the large fleet's runs could get on hosts with CPUs of their own, against the small
    fleet's no-op: never shorter than the controller's CPU time (median), since pyinfra drives every
    host from one Python thread. Here the lab's hosts share the controller's cores, so wall times at
    1+64 mostly measure the hosts; this bound does not. The ratios divide by the small fleet's no-op
    as measured here, which hosts of their own could only make shorter: they are lower bounds."""
    scaling = results["scaling"]
    large = next(r for r in results["fleets"] if r["clients"] == scaling["large"])
    small_noop = scaling["noop_small"]["median_s"]
    return {"noop_cpu_s": large["noop"]["cpu_median_s"], "floor_cpu_s": large["floor"]["cpu_median_s"],
            "small_noop_s": small_noop,
            "noop_over_small": round(large["noop"]["cpu_median_s"] / small_noop, 2),
            "floor_over_small": round(large["floor"]["cpu_median_s"] / small_noop, 2)}


def table(results: dict) -> str:
    rows = ["| hosts | floor | no-op | no-op / floor | controller CPU, floor / no-op | cold deploy | by hand "
            "| cold / by hand | peak RSS (deploy) | lab memory |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def fmt(s: dict) -> str:
        return f"{s['median_s']:.2f} s ({s['min_s']:.2f}–{s['max_s']:.2f})"

    for r in results["fleets"]:
        cold = r.get("cold")
        rows.append(
            f"| 1+{r['clients']} | {fmt(r['floor'])} | {fmt(r['noop'])} | {r['noop_over_floor']['median']:.2f}× "
            + f"| {r['floor']['cpu_median_s']:.2f} s / {r['noop']['cpu_median_s']:.2f} s "
            + (f"| {fmt(cold)} | {fmt(r['by_hand'])} | {r['cold_over_by_hand']['median']:.2f}× "
               if cold else "| – | – | – ")
            + f"| {max(r['noop']['max_rss_mb'], cold['max_rss_mb'] if cold else 0):.0f} MB "
            + f"| {r.get('lab_memory_mb', 0) / 1024:.1f} GiB |"
        )
    lines = ["\n".join(rows), ""]
    scaling = results.get("scaling")
    if scaling:
        lines.append(f"no-op 1+{scaling['large']} / no-op 1+{scaling['small']}, pair by pair: "
                     f"{scaling['large_over_small']['median']:.2f}× "
                     f"({scaling['large_over_small']['min']:.2f}–{scaling['large_over_small']['max']:.2f}; "
                     f"{fmt(scaling['noop_large'])} vs {fmt(scaling['noop_small'])})")
        bound = scaling["controller_bound"]
        lines.append(
            f"with hosts on CPUs of their own, no run can be shorter than the controller's CPU time (one Python "
            f"thread): at 1+{scaling['large']} the no-op needs {bound['noop_cpu_s']:.2f} s of it, "
            f"{bound['noop_over_small']:.2f}× the no-op of 1+{scaling['small']} "
            f"({bound['small_noop_s']:.2f} s), and the floor alone {bound['floor_cpu_s']:.2f} s, "
            f"{bound['floor_over_small']:.2f}×")
    add = results.get("add_client")
    if add:
        lines.append(f"add one client to 1+{add['clients']} with --limit: {fmt(add['add_one_with_limit'])}, "
                     f"{add['add_over_noop']['median']:.2f}× a full no-op run")
    profile = results.get("profile")
    if profile:
        lines.append(f"profile of one no-op deploy of 1+{profile['clients']} ({profile['samples']} samples): own time "
                     + ", ".join(f"{name} {pct}%" for name, pct in profile["own_percent_by_package"].items())
                     + f"; this repository's code on the stack {profile['ours_inclusive_percent']}%")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="2,8,16", help="fleet sizes to measure (comma-separated)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each no-op/floor pair")
    parser.add_argument("--cold-runs", type=int, default=3, help="runs of each cold/by-hand pair")
    parser.add_argument("--skip-cold", action="store_true",
                        help="only floor and no-op (minutes faster; for iterating on no-op cost)")
    parser.add_argument("--keep-lab", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="after the largest fleet's no-op runs, profile one no-op deploy with py-spy")
    args = parser.parse_args()

    lab_image.build_all(BENCH_LAB)
    started = time.time()
    results = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "fleets": []}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / "latest.json"

    def save() -> None:  # after every phase: a failure late in a long run keeps what was measured
        results["duration_s"] = round(time.time() - started)
        out.write_text(json.dumps(results, indent=2) + "\n")

    try:
        for clients in [int(c) for c in args.clients.split(",")]:
            results["fleets"].append(bench_fleet(clients, args.runs, 0 if args.skip_cold else args.cold_runs))
            save()
            if args.profile and clients == max(int(c) for c in args.clients.split(",")):
                results["profile"] = profile_noop(clients)
                save()
        sizes = sorted(int(c) for c in args.clients.split(","))
        if len(sizes) > 1:
            results["scaling"] = bench_scaling(sizes[0], sizes[-1], args.runs)
            results["scaling"]["controller_bound"] = controller_bound(results)
            save()
        if not args.skip_cold:
            results["add_client"] = bench_add_client(2, args.cold_runs)
            save()
    finally:
        if not args.keep_lab:
            lab_hosts.down(BENCH_LAB)
        lab_hosts.down(SMALL_LAB)
    print(f"machine: {results['machine']}")
    print(table(results))
    print(f"\n(JSON: {out}; {results['duration_s']} s)")


def machine() -> str:
    cpus = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    mem = subprocess.run(["sh", "-c", "free -g | awk '/Mem:/ {print $2}'"], capture_output=True, text=True).stdout.strip()
    docker = subprocess.run(["docker", "version", "-f", "{{.Server.Version}}"], capture_output=True,
                            text=True).stdout.strip()
    return f"{cpus} cores, {mem} GiB, Docker {docker}, Python {sys.version.split()[0]}"


if __name__ == "__main__":
    main()
