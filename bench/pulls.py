"""`python -m bench.pulls`: many clients pulling one image at once, through 1 and through 3 registry
replicas on the lab's Ceph store, behind the lab's load balancer (issue #18's measurement); with
`--compare cache`, through 3 replicas with their shared blob-descriptor cache and with it stopped
(issue #36's).

The lab (`regdeploy-bench-pulls`: registry1..3, lb1, lb2, store, N clients) is deployed with regdeploy, an
image of random layers (`--layers`, `--size-mb` in all) is pushed through the load balancer, then each
round removes it from every client and has all of them pull it at the same moment; the figure is the
wall time from the start to the last pull's end. Rounds alternate 3 replicas and 1 (the other two
stopped, out of the load balancer's rotation), or the cache running and stopped on every load balancer
(the replicas then ask the bucket, as without one), so the two are compared neighbour by neighbour on a
noisy machine.
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


def cache_running(running: bool) -> None:
    """Start (empty: nothing is kept on disk) or stop the replicas' shared cache on every load balancer."""
    for lb in lab_config.LB_HOSTS:
        ssh(lb, f"systemctl {'start' if running else 'stop'} redis-server")


def cache_stats() -> dict[str, int]:
    """The cache's hits and misses, summed over the load balancers (only the address's holder serves)."""
    totals = {"keyspace_hits": 0, "keyspace_misses": 0}
    for lb in lab_config.LB_HOSTS:
        info = ssh(lb, f"{load_balancer.cache_cli('info stats')} 2>/dev/null || true", check=False).stdout
        for line in info.splitlines():
            key, _, value = line.strip().partition(":")
            if key in totals:
                totals[key] += int(value)
    return totals


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
    parser.add_argument("--size-mb", type=int, default=32, help="the image's size, all layers together")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--compare", choices=("replicas", "cache"), default="replicas")
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
        reference = f"{lab_config.VIP_NAME}:5000/bench/random:{args.layers}x{args.size_mb}m"
        # Layers of random bytes (nothing compresses them), one RUN-less commit each, made and pushed on
        # client1: the first imported from a tar, each next one a file added in a container.
        each = max(1, args.size_mb * 1024 // args.layers)
        ssh("client1", f"mkdir -p /tmp/layer && head -c {each}K /dev/urandom > /tmp/layer/blob0 "
                       f"&& tar -C /tmp/layer -c . | docker import - {reference} >/dev/null")
        for layer in range(1, args.layers):
            ssh("client1", f"docker rm -f mk >/dev/null 2>&1; docker create --name mk {reference} /blob0 >/dev/null "
                           f"&& head -c {each}K /dev/urandom > /tmp/blob && docker cp /tmp/blob mk:/blob{layer} "
                           f"&& docker commit mk {reference} >/dev/null && docker rm mk >/dev/null")
        ssh("client1", f"docker push -q {reference} >/dev/null && docker image rm {reference} >/dev/null")
        # Each variant: (label, what sets it up).
        if args.compare == "replicas":
            variants = [(f"{REPLICAS} replicas", lambda: serve_with(REPLICAS)), ("1 replica", lambda: serve_with(1))]
        else:
            serve_with(REPLICAS)
            variants = [("cache", lambda: cache_running(True)), ("cache stopped", lambda: cache_running(False))]
        rounds = []
        for index in range(args.rounds * 2):
            label, setup = variants[index % 2]
            setup()
            stats = cache_stats()
            result = {"variant": label, **pull_all(clients, reference)}
            after = cache_stats()
            result.update({key.removeprefix("keyspace_"): after[key] - stats[key] for key in stats})
            print(json.dumps(result), file=sys.stderr)
            rounds.append(result)
        serve_with(REPLICAS)
        cache_running(True)
        summary = {}
        for label, _ in variants:
            walls = [r["wall_s"] for r in rounds if r["variant"] == label]
            summary[label] = {"median_wall_s": statistics.median(walls), "min_s": min(walls), "max_s": max(walls),
                              "failed": sum(r["failed"] for r in rounds if r["variant"] == label),
                              "mb_per_s": round(args.clients * args.size_mb / statistics.median(walls), 1)}
        pairs = [rounds[i + 1]["wall_s"] / rounds[i]["wall_s"] for i in range(0, len(rounds) - 1, 2)]
        report = {"clients": args.clients, "size_mb": args.size_mb, "layers": args.layers, "compare": args.compare,
                  "rounds": rounds, "summary": summary,
                  "second_over_first_pairs": [round(p, 2) for p in pairs]}
        results = RESULTS if args.compare == "replicas" else RESULTS.with_name("pulls-cache.json")
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(report, indent=2) + "\n")
        print(f"{args.clients} clients pulling {args.size_mb} MB in {args.layers} layer(s) at once (wall time to "
              f"the last pull, median of {args.rounds}):")
        for label, row in summary.items():
            print(f"  {label}: {row['median_wall_s']:.2f} s ({row['min_s']:.2f}-{row['max_s']:.2f}), "
                  f"{row['mb_per_s']} MB/s in all, {row['failed']} failed")
        print(f"  {variants[1][0]} / {variants[0][0]}, pair by pair: {', '.join(f'{p:.2f}x' for p in pairs)}")
    finally:
        if not args.keep_lab:
            lab_hosts.down(PULLS_LAB)


if __name__ == "__main__":
    main()
