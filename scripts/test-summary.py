#!/usr/bin/env python3
"""Prints what `make test` ran on, from the test log the harness writes
(ODIN_TEST_LOG, one JSON line per fact; see harness/src/test_log.rs):

    NATS: 141 servers on container, 12 on binary; 9 clusters (27 nodes) on binary
    skipped (cargo test counts these as passed): 1
      nats::container::container_backend_round_trips_restarts_and_pauses: Docker is not reachable (...)

Usage: scripts/test-summary.py LOG. A missing or empty log says so.
"""
import collections
import json
import sys


def main():
    path = sys.argv[1]
    try:
        lines = open(path).read().splitlines()
    except FileNotFoundError:
        lines = []
    servers, clusters, nodes, skips = (
        collections.Counter(),
        collections.Counter(),
        collections.Counter(),
        [],
    )
    for line in lines:
        fact = json.loads(line)
        if "nats" in fact:
            if fact.get("nodes", 1) > 1:
                clusters[fact["nats"]] += 1
                nodes[fact["nats"]] += fact["nodes"]
            else:
                servers[fact["nats"]] += 1
        elif "skip" in fact:
            skips.append((fact["skip"], fact["reason"]))
    print("test summary")
    if not servers and not clusters:
        print("  NATS: no server was started through the harness (or no test log)")
    else:
        parts = [f"{n} servers on {backend}" for backend, n in servers.most_common()]
        for backend in sorted(clusters):
            parts.append(f"{clusters[backend]} clusters ({nodes[backend]} nodes) on {backend}")
        print("  NATS: " + ", ".join(parts))
    if skips:
        print(f"  skipped (cargo test counts these as passed): {len(skips)}")
        for name, reason in sorted(skips):
            print(f"    {name}: {reason}")
    else:
        print("  skipped: none")


if __name__ == "__main__":
    main()
