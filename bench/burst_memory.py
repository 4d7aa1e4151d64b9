#!/usr/bin/env python3
"""Memory after a burst: does the gateway give memory back when a burst of streams is over?

    python3 bench/burst_memory.py --bin target/release/switchyard \
        --client target/release/examples/benchclient [--streams 2000] [--settle 30]

Starts a mock and the gateway (pinned as in bench/rig.py), reads the gateway's VmRSS once
warm, holds N concurrent paced streams (64 chunks at 20 ms each, opened at 2,000/s), then
samples VmRSS 1, 10 and `--settle` seconds after the last stream ended. Prints one JSON line.
Only 127.0.0.1 is contacted. Used for BENCHMARKS.md's "memory after a burst" table.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rig  # noqa: E402  (the rig's process, plan and /proc helpers)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--client", required=True)
    ap.add_argument("--streams", type=int, default=2000)
    ap.add_argument("--settle", type=int, default=30)
    ap.add_argument("--label", default="")
    a = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="switchyard-burst-"))
    env = dict(os.environ, RUST_LOG="warn")
    procs = []
    try:
        mock = rig.Proc("mock", [a.bin, "--log-level", "warn", "mock", "--listen", "127.0.0.1:0",
                                 "--name", "primary"], rig.LOAD_CORE, work, env=env,
                        ready=r"listening on http://(\S+)")
        procs.append(mock)
        cfg = work / "switchyard.yaml"
        cfg.write_text(rig.gateway_config(mock.addr, mock.addr, rig.free_port()))
        gw = rig.Proc("gateway", [a.bin, "--log-level", "warn", "serve", "--config", cfg,
                                  "--listen", "127.0.0.1:0"], rig.GW_CORE, work,
                      env=dict(env, BENCH_KEY_A=rig.KEY, BENCH_KEY_B=rig.KEY),
                      ready=r"switchyard listening on http://(\S+)")
        procs.append(gw)
        body = work / "body.json"
        body.write_bytes(rig.request_body("anthropic", "small", "bench-anthropic", True))
        url = f"http://{gw.addr}/v1/messages"
        hdr = rig.hflags(rig.headers_for("anthropic"))

        def streams(n):
            rig.set_plan(mock, {"kind": "ok", "chunks": 64, "chunk_interval_ms": 20, "text": rig.TOKENS})
            out = rig.subprocess.run(
                ["taskset", "-c", rig.LOAD_CORE, a.client, "streams", "--url", url, "--body", str(body),
                 *[str(h) for h in hdr], "-c", str(n), "--chunks", "64", "--open-rate", "2000",
                 "--timeout", "600"],
                capture_output=True, text=True, check=True)
            j = json.loads(out.stdout)
            assert j["complete"] == n and j["lost"] == 0, j
            return j

        streams(4)  # warm: pools, metric handles, first allocations
        time.sleep(1)
        warm = rig.mem_kb(gw.pid, "VmRSS")
        t0 = time.time()
        streams(a.streams)
        burst_s = time.time() - t0
        hwm = rig.mem_kb(gw.pid, "VmHWM")
        after = {}
        for at in sorted(x for x in {1, 10, a.settle} if x <= a.settle):
            time.sleep(max(0, t0 + burst_s + at - time.time()))
            after[f"rss_{at}s_kb"] = rig.mem_kb(gw.pid, "VmRSS")
        print(json.dumps({"label": a.label, "streams": a.streams, "rss_warm_kb": warm,
                          "vmhwm_kb": hwm, **after, "burst_s": round(burst_s, 1)}))
    finally:
        for p in reversed(procs):
            p.stop()


if __name__ == "__main__":
    main()
