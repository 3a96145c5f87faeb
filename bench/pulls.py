"""`python -m bench.pulls`: many clients pulling one image at once, through 1 and through 3 registry
replicas on the lab's Ceph store, behind the lab's load balancer (issue #18's measurement).

The lab (`regdeploy-bench-pulls`: registry1..3, lb1, lb2, store, N clients) is deployed with regdeploy, an
image of one random layer (`--size-mb`) is pushed through the load balancer, then each round removes
it from every client and has all of them pull it at the same moment; the figure is the wall time from
the start to the last pull's end. Rounds alternate 3 replicas and 1 (the other two stopped, out of
the load balancer's rotation), so the two are compared neighbour by neighbour on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lab import config as lab_config
from lab import hosts as lab_hosts
from lab import ssh as lab_ssh
from regdeploy import load_balancer

REPO_ROOT = Path(__file__).resolve().parent.parent
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
PULLS_LAB = lab_config.default_lab("regdeploy-bench-pulls")
REPLICAS = 3
RESULTS = REPO_ROOT / "bench" / "results" / "pulls.json"


def ssh(hostname: str, command: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(lab_ssh.ssh_command(PULLS_LAB, hostname, command), capture_output=True, text=True,
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise SystemExit(f"{hostname}: {command!r} failed: {result.stderr.strip()[-800:]}")
    return result


def lb_up() -> set[str]:
    """The replicas every load balancer reports UP."""
    up = None
    for lb in lab_config.LB_HOSTS:
        page = ssh(lb, "curl -fsS 'http://127.0.0.1:8404/stats;csv'").stdout
        seen = {row.split(",")[1] for row in page.splitlines()
                if row.startswith(load_balancer.LB_BACKEND + ",") and row.split(",")[17] == "UP"
                and row.split(",")[1] not in ("BACKEND", "FRONTEND")}
        up = seen if up is None else up & seen
    return up or set()


def serve_with(replicas: int) -> None:
    """Run the registry on the first `replicas` replicas only; wait until the load balancers agree."""
    wanted = {f"registry{i}" for i in range(1, replicas + 1)}
    for i in range(1, REPLICAS + 1):
        name = f"registry{i}"
        ssh(name, f"docker {'start' if name in wanted else 'stop'} registry >/dev/null")
    deadline = time.monotonic() + 60
    while lb_up() != wanted:
        if time.monotonic() > deadline:
            raise SystemExit(f"the load balancers report {sorted(lb_up())} UP, not {sorted(wanted)}")
        time.sleep(0.5)


def pull_all(clients: list[str], reference: str) -> dict:
    for client in clients:
        ssh(client, f"docker image rm -f {reference} >/dev/null 2>&1; true")

    def pull(client: str) -> tuple[float, bool]:
        start = time.monotonic()
        ok = ssh(client, f"docker pull -q {reference} >/dev/null", check=False).returncode == 0
        return time.monotonic() - start, ok

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        results = list(pool.map(pull, clients))
    wall = time.monotonic() - start
    return {"wall_s": round(wall, 2), "slowest_s": round(max(t for t, _ in results), 2),
            "median_client_s": round(statistics.median(t for t, _ in results), 2),
            "failed": sum(1 for _, ok in results if not ok)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per replica count")
    parser.add_argument("--size-mb", type=int, default=32)
    parser.add_argument("--keep-lab", action="store_true")
    args = parser.parse_args()

    lab_hosts.down(PULLS_LAB)
    lab_hosts.up(PULLS_LAB, clients=args.clients, replicas=REPLICAS)
    try:
        started = time.monotonic()
        deploy = subprocess.run([PYINFRA, "-y", str(PULLS_LAB.inventory_path), "deploy.py"], cwd=REPO_ROOT,
                                capture_output=True, text=True)
        if deploy.returncode != 0:
            raise SystemExit(deploy.stderr[-3000:])
        print(f"deploy of 3 replicas + 2 load balancers + {args.clients} clients: {time.monotonic() - started:.1f} s", file=sys.stderr)
        clients = [f"client{i}" for i in range(1, args.clients + 1)]
        reference = f"{lab_config.VIP_NAME}:5000/bench/random:{args.size_mb}m"
        # One layer of random bytes (nothing compresses it), made and pushed on client1.
        ssh("client1", f"mkdir -p /tmp/layer && head -c {args.size_mb}M /dev/urandom > /tmp/layer/blob "
                       f"&& tar -C /tmp/layer -c . | docker import - {reference} >/dev/null "
                       f"&& docker push -q {reference} >/dev/null && docker image rm {reference} >/dev/null")
        rounds = []
        for index in range(args.rounds * 2):
            replicas = REPLICAS if index % 2 == 0 else 1
            serve_with(replicas)
            result = {"replicas": replicas, **pull_all(clients, reference)}
            print(json.dumps(result), file=sys.stderr)
            rounds.append(result)
        serve_with(REPLICAS)
        summary = {}
        for replicas in (1, REPLICAS):
            walls = [r["wall_s"] for r in rounds if r["replicas"] == replicas]
            summary[replicas] = {"median_wall_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
                                 "failed": sum(r["failed"] for r in rounds if r["replicas"] == replicas),
                                 "mb_per_s": round(args.clients * args.size_mb / statistics.median(walls), 1)}
        pairs = [rounds[i + 1]["wall_s"] / rounds[i]["wall_s"] for i in range(0, len(rounds) - 1, 2)]
        report = {"clients": args.clients, "size_mb": args.size_mb, "rounds": rounds, "summary": summary,
                  "one_over_three_pairs": [round(p, 2) for p in pairs]}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
        print(f"{args.clients} clients pulling {args.size_mb} MB at once (wall time to the last pull, median "
              f"of {args.rounds}):")
        for replicas, row in summary.items():
            print(f"  {replicas} replica{'s' if replicas > 1 else ''}: {row['median_wall_s']:.2f} s "
                  f"({row['min_s']:.2f}-{row['max_s']:.2f}), {row['mb_per_s']} MB/s in all, {row['failed']} failed")
        print(f"  1 replica / 3 replicas, pair by pair: {', '.join(f'{p:.2f}x' for p in pairs)}")
    finally:
        if not args.keep_lab:
            lab_hosts.down(PULLS_LAB)


if __name__ == "__main__":
    main()
