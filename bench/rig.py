#!/usr/bin/env python3
"""Switchyard benchmark rig: the measurement half of `bench/run` (which builds and installs).

Starts two `switchyard mock`s (primary, fallback), the gateway, nginx (plain keep-alive reverse
proxy, the floor) and optionally LiteLLM's proxy (--litellm) and TensorZero and Portkey
(--peers, bench/peers.py), pinned the same way every time:

    core 0: the proxy under test (gateway / nginx / LiteLLM / TensorZero / Portkey)
    core 1: the mocks and the load generator

and measures, each contender against direct-to-mock in the same run, 5 interleaved rounds,
medians with min-max. Python standard library only. Prints Markdown tables; writes every raw
number to the JSON file given by --out.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402  (bench/peers.py: TensorZero and Portkey, --peers)

GW_CORE = "0"
LOAD_CORE = "1"
KEY = "sk-bench-dummy-not-a-real-key"
TOKENS = "".join("k%05d " % i for i in range(64))
HOLD = (10 * 60)  # seconds a helper process may live at most (safety net)


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class RigError(Exception):
    pass


# ------------------------------------------------------------------------ processes


class Proc:
    """A child process pinned with taskset; stdout/stderr go to files in the work dir."""

    def __init__(self, name, argv, core, work, env=None, ready=None, port=None, timeout=60):
        self.name = name
        self.out = work / f"{name}.out"
        self.err = work / f"{name}.err"
        full = ["taskset", "-c", core] + [str(a) for a in argv]
        with open(self.out, "w") as o, open(self.err, "w") as e:
            self.p = subprocess.Popen(full, stdout=o, stderr=e, env=env, start_new_session=True)
        self.pid = self.p.pid
        self.addr = None
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.p.poll() is not None:
                raise RigError(f"{name} exited ({self.p.returncode}): {self.err.read_text()[-2000:]}")
            if ready:
                m = re.search(ready, self.out.read_text())
                if m:
                    self.addr = m.group(1)
                    return
            elif port and port_open(port):
                self.addr = f"127.0.0.1:{port}"
                return
            time.sleep(0.05)
        self.stop()
        raise RigError(f"{name} did not start within {timeout}s: {self.err.read_text()[-2000:]}")

    def stop(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def pin(pid, core):
    """Moves every thread of pid and its descendants to `core`."""
    for p in descendants(pid):
        subprocess.run(["taskset", "-a", "-p", "-c", core, str(p)], capture_output=True)


def cpu_seconds(pid):
    """utime+stime (+ those of reaped children) of pid and its descendants, from /proc/PID/stat."""
    tck = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            # fields[11..14] = utime stime cutime cstime (stat fields 14-17)
            total += sum(int(x) for x in fields[11:15])
        except (OSError, IndexError):
            pass
    return total / tck


def cpu_ns(pid):
    """On-CPU nanoseconds of every thread of pid and its descendants (/proc/PID/task/TID/schedstat,
    first field): the same quantity as utime+stime at ns instead of 10 ms resolution, for short
    measurements. Threads that exited are not counted (the gateway's runtime threads live on)."""
    total = 0
    for p in descendants(pid):
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, IndexError, ValueError):
                pass
    return total


def memcpy_ns(size, reps=500):
    """ns for one memcpy of `size` bytes, source and destination warm in cache (libc memmove via
    ctypes; the cost of a 0-byte call, the ctypes overhead, subtracted; median of 9 batches)."""
    import ctypes
    src, dst = ctypes.create_string_buffer(size), ctypes.create_string_buffer(size)
    move = ctypes.memmove

    def per_call(n):
        batches = []
        for _ in range(9):
            t0 = time.perf_counter_ns()
            for _ in range(reps):
                move(dst, src, n)
            batches.append((time.perf_counter_ns() - t0) / reps)
        return statistics.median(batches)

    per_call(size)  # warm the buffers
    return max(0.0, per_call(size) - per_call(0))


def mem_kb(pid, field):
    total = 0
    for p in descendants(pid):
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


class RssSampler:
    """Samples VmRSS of a process tree every 50 ms in a thread; .peak in kB."""

    def __init__(self, pid):
        self.pid, self.peak, self.samples = pid, 0, []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            kb = mem_kb(self.pid, "VmRSS")
            self.samples.append(kb)
            self.peak = max(self.peak, kb)
            self._stop.wait(0.05)

    def stop(self):
        self._stop.set()
        self._t.join()
        return self


# ------------------------------------------------------------------------------ HTTP


def http(method, url, body=None, timeout=10):
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def set_plan(mock, then, steps=()):
    http("POST", f"http://{mock.addr}/_mock/plan", {"steps": list(steps), "then": then})


# --------------------------------------------------------------------------- numbers


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, nd=0):
    if x is None:
        return "—"
    if abs(x) >= 1000 and nd == 0:
        return f"{x:,.0f}"
    return f"{x:.{nd}f}"


def sub(a, b):
    return None if a is None or b is None else a - b


def signed(x):
    return "—" if x is None else ("+" if x >= 0 else "−") + fmt(abs(x))


def spread(xs, nd=0):
    """'median (min–max)' of a list of numbers."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return "—"
    if len(xs) == 1:
        return fmt(xs[0], nd)
    return f"{fmt(statistics.median(xs), nd)} ({fmt(min(xs), nd)}–{fmt(max(xs), nd)})"


# -------------------------------------------------------------------------- the rig


class Rig:
    def __init__(self, args):
        self.a = args
        self.bin = Path(args.bin)
        self.client = Path(args.client)
        self.work = Path(tempfile.mkdtemp(prefix="switchyard-bench-"))
        self.procs = []
        self.results = {"machine": machine(), "args": vars(args), "stages": {}}
        self.failures = []
        self.quick = args.quick
        self.rounds = 1 if args.quick else args.rounds
        self.tool = args.tool

    # ---- lifecycle
    def start(self, name, argv, core, **kw):
        log(f"starting {name}")
        p = Proc(name, argv, core, self.work, **kw)
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()

    def check(self, ok, what):
        if not ok:
            self.failures.append(what)
            log(f"CHECK FAILED: {what}")

    def setup(self):
        env = dict(os.environ, RUST_LOG="warn")
        mock_re = r"listening on http://(\S+)"
        self.mock_a = self.start(
            "mock-primary", [self.bin, "--log-level", "warn", "mock", "--listen", "127.0.0.1:0", "--name", "primary"],
            LOAD_CORE, env=env, ready=mock_re)
        self.mock_b = self.start(
            "mock-fallback", [self.bin, "--log-level", "warn", "mock", "--listen", "127.0.0.1:0", "--name", "fallback"],
            LOAD_CORE, env=env, ready=mock_re)
        self.closed_port = free_port()  # nothing listens here: connection refused
        cfg = self.work / "switchyard.yaml"
        genv = dict(env, BENCH_KEY_A=KEY, BENCH_KEY_B=KEY)
        # Builds with the health registry get a `health:` block that never ejects on its own (so
        # each failover mode measures a fresh failure); builds without one reject the key.
        self.has_health = True
        for health in (True, False):
            cfg.write_text(gateway_config(self.mock_a.addr, self.mock_b.addr, self.closed_port, health,
                                          self.a.session_from,
                                          peers.gateway_routes() if self.a.peers else ""))
            try:
                self.gw = self.start(
                    "gateway", [self.bin, "--log-level", "warn", "serve", "--config", cfg, "--listen", "127.0.0.1:0"],
                    GW_CORE, env=genv, ready=r"switchyard listening on http://(\S+)")
                break
            except RigError as e:
                if not health or "health" not in str(e):
                    raise
                self.procs.pop()
                self.has_health = False
                log("this build has no health registry (config key `health` rejected): cooldown row skipped")
        time.sleep(0.5)
        self.results["rss_idle_startup_kb"] = mem_kb(self.gw.pid, "VmRSS")
        self.nginx = None
        if self.a.nginx:
            nginx = shutil.which("nginx") or "/usr/sbin/nginx"
            if os.path.exists(nginx):
                port = free_port()
                conf = self.work / "nginx.conf"
                (self.work / "nginx").mkdir(exist_ok=True)
                conf.write_text(nginx_config(self.work / "nginx", port, self.mock_a.addr))
                self.nginx = self.start("nginx", [nginx, "-c", conf, "-p", self.work / "nginx"], GW_CORE, port=port)
            else:
                log("nginx not installed: the nginx floor is skipped")
        self.litellm = None
        if self.a.litellm:
            self.litellm = self.start_litellm()
        self.start_peers()
        # Bodies.
        self.bodies = {}
        for dialect in ("openai", "anthropic"):
            for size in ("small", "large"):
                for who in ("gateway", "upstream"):
                    model = route_model(dialect) if who == "gateway" else upstream_model(dialect)
                    b = request_body(dialect, size, model, stream=False)
                    path = self.work / f"body-{dialect}-{size}-{who}.json"
                    path.write_bytes(b)
                    self.bodies[(dialect, size, who)] = path
        self.results["body_bytes"] = {f"{d}-{s}": self.bodies[(d, s, "upstream")].stat().st_size
                                      for d in ("openai", "anthropic") for s in ("small", "large")}

    def start_litellm(self):
        venv = Path(self.a.litellm_venv)
        exe = venv / "bin" / "litellm"
        if not exe.exists():
            log(f"LiteLLM not installed in {venv}: skipped")
            self.results["litellm_error"] = f"{exe} missing"
            return None
        port = free_port()
        cfg = self.work / "litellm.yaml"
        cfg.write_text(litellm_config(self.mock_a.addr, self.mock_b.addr,
                                      peers.litellm_models(self.mock_a.addr, self.mock_b.addr) if self.a.peers else None))
        env = {k: v for k, v in os.environ.items()
               if not re.search(r"(KEY|TOKEN|SECRET)", k) or k.startswith("BENCH_")}
        env.update(BENCH_KEY_A=KEY, BENCH_KEY_B=KEY, LITELLM_LOG="ERROR", LITELLM_MODE="PRODUCTION",
                   LITELLM_TELEMETRY="False", DISABLE_SCHEMA_UPDATE="true", NO_DOCS="True",
                   PATH=f"{venv / 'bin'}:{os.environ.get('PATH', '')}")
        try:
            return self.start("litellm", [exe, "--config", cfg, "--host", "127.0.0.1", "--port", port,
                                          "--num_workers", "1"], GW_CORE, env=env, port=port, timeout=180)
        except RigError as e:
            self.results["litellm_error"] = str(e)[-1500:]
            log(f"LiteLLM failed to start: {e}")
            return None

    def start_peers(self):
        # --peers: TensorZero and Portkey on the proxy core, like LiteLLM (bench/peers.py).
        self.tensorzero = self.portkey = None
        if not self.a.peers:
            return
        env = peers.clean_env()
        self.tensorzero = peers.start_tensorzero(self, env, GW_CORE)
        self.portkey = peers.start_portkey(self, env, GW_CORE, free_port)
        for k in ("tensorzero_error", "portkey_error"):
            if self.results.get(k):
                log(f"{k}: {self.results[k][-500:]}")

    # ---- targets
    def contenders(self):
        out = [("direct", None), ("gateway", self.gw)]
        if self.nginx:
            out.append(("nginx", self.nginx))
        if self.litellm:
            out.append(("litellm", self.litellm))
        for who in ("tensorzero", "portkey"):
            if getattr(self, who, None):
                out.append((who, getattr(self, who)))
        return out

    def serves(self, who, dialect):
        """Whether a contender takes this client dialect (TensorZero: OpenAI only)."""
        return who not in peers.PEER_DIALECTS or dialect in peers.PEER_DIALECTS[who]

    def target(self, who, dialect, size, stream=False):
        """(url, body file, headers) for a contender."""
        if who in peers.PEER_DIALECTS:
            url, model, extra = peers.target(self, who, dialect, stream)
            body = self.work / f"body-{dialect}-{size}-{who}-{'stream' if stream else 'plain'}.json"
            if not body.exists():
                body.write_bytes(request_body(dialect, size, model, stream=stream))
            return url, body, headers_for(dialect) + extra
        if who == "direct":
            base, body_who = self.mock_a.addr, "upstream"
        elif who == "nginx":
            base, body_who = self.nginx.addr, "upstream"
        elif who == "litellm":
            base, body_who = self.litellm.addr, "gateway"
        else:
            base, body_who = self.gw.addr, "gateway"
        path = PATHS[dialect]
        if stream:
            body = self.work / f"body-{dialect}-{size}-{body_who}-stream.json"
            if not body.exists():
                model = route_model(dialect) if body_who == "gateway" else upstream_model(dialect)
                body.write_bytes(request_body(dialect, size, model, stream=True))
        else:
            body = self.bodies[(dialect, size, body_who)]
        return f"http://{base}{path}", body, headers_for(dialect)

    # ---- load generators
    def load(self, url, body, headers, c, secs=None, n=None, rate=None):
        """One measurement; returns {rps, p50, p90, p99 (µs), ok, errors}."""
        if self.tool == "oha":
            cmd = ["taskset", "-c", LOAD_CORE, self.a.oha, "--no-tui", "--output-format", "json",
                   "-m", "POST", "-D", str(body), "-c", str(c)]
            for h in headers:
                cmd += ["-H", h]
            if n is not None:
                cmd += ["-n", str(n)]
            else:
                cmd += ["-z", f"{secs}s", "-w"]
            if rate:
                cmd += ["-q", str(rate), "--latency-correction"]
            cmd.append(url)
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                raise RigError(f"oha failed: {r.stderr[-1500:]}")
            j = json.loads(r.stdout)
            lp = j["latencyPercentiles"]
            codes = j.get("statusCodeDistribution", {})
            ok = sum(v for k, v in codes.items() if k.startswith("2"))
            bad = sum(v for k, v in codes.items() if not k.startswith("2"))
            errs = sum(j.get("errorDistribution", {}).values())
            return {"rps": ok / j["summary"]["total"] if j["summary"]["total"] else 0.0,
                    "p50": lp["p50"] * 1e6 if lp.get("p50") is not None else None,
                    "p90": lp["p90"] * 1e6 if lp.get("p90") is not None else None,
                    "p99": lp["p99"] * 1e6 if lp.get("p99") is not None else None,
                    "ok": ok, "errors": errs + bad, "error_detail": j.get("errorDistribution") or
                    ({k: v for k, v in codes.items() if not k.startswith("2")} or None)}
        # our own closed-loop client
        if n is None:
            n = max(200, int(secs * (2000 if c == 1 else 4000)))
        j = self.client_json(["load", "--url", url, "--body", body, *hflags(headers), "-c", c, "-n", n])
        lat = j["latency_us"]
        return {"rps": j["rps"], "p50": lat.get("p50"), "p90": lat.get("p90"), "p99": lat.get("p99"),
                "ok": j["ok"], "errors": j["errors"] + j["non2xx"], "error_detail": j["first_error"]}

    def client_json(self, args, core=LOAD_CORE, timeout=900):
        cmd = ["taskset", "-c", core, str(self.client)] + [str(a) for a in args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RigError(f"benchclient {args[0]} failed: {r.stderr[-1500:]}")
        return json.loads(r.stdout)

    # ---- stage 1: non-streaming latency and throughput
    def stage_latency(self):
        # c=1 is measured twice: with the proxy on its own core (the split placement every other
        # number uses) and with the proxy moved onto the load core ("one core"), which removes the
        # cross-core wake-ups (expensive in this VM) and leaves the proxy's own software cost.
        cells = [(d, s, c, pl) for d in ("openai", "anthropic") for s in ("small", "large")
                 for c, pl in ((1, "split"), (1, "shared"), (64, "split"))]
        secs = self.a.secs
        log(f"warm-up: every contender, every cell ({self.tool})")
        for who, _ in self.contenders():
            for d, s, c, pl in cells:
                if pl == "shared" or not self.serves(who, d):
                    continue
                url, body, hdr = self.target(who, d, s)
                self.load(url, body, hdr, c, n=200 if self.quick else (300 if who == "litellm" else 2000))
        data = {}
        rss_load = []
        for rnd in range(self.rounds):
            log(f"latency round {rnd + 1}/{self.rounds}")
            for d, s, c, pl in cells:
                for who, proc in self.contenders():
                    if not self.serves(who, d):
                        continue
                    url, body, hdr = self.target(who, d, s)
                    sampler = RssSampler(self.gw.pid) if who == "gateway" and c == 64 else None
                    if proc is not None and pl == "shared":
                        pin(proc.pid, LOAD_CORE)
                    try:
                        if self.quick:
                            r = self.load(url, body, hdr, c, n=300 if c == 1 else 1000)
                        else:
                            r = self.load(url, body, hdr, c, secs=secs)
                    finally:
                        if proc is not None and pl == "shared":
                            pin(proc.pid, GW_CORE)
                    if sampler:
                        sampler.stop()
                        if sampler.samples:
                            rss_load.append(statistics.median(sampler.samples))
                    data.setdefault(f"{d}/{s}/c{c}/{pl}", {}).setdefault(who, []).append(r)
                    self.check(r["ok"] > 0 and r["rps"] > 0, f"latency {who} {d} {s} c={c}: no successful request")
                    self.check(r["errors"] == 0, f"latency {who} {d} {s} c={c}: {r['errors']} errors ({r['error_detail']})")
        self.results["stages"]["latency"] = data
        self.results["rss_under_load_kb"] = rss_load

    # ---- stage 1b: constant arrival rate (oha -q), so slow requests are not under-counted
    def stage_rate(self):
        if self.tool != "oha" or self.quick:
            return
        data = {}
        rate = self.a.rate
        for rnd in range(self.rounds):
            log(f"constant-rate round {rnd + 1}/{self.rounds} ({rate} req/s)")
            for who, _ in self.contenders():
                # LiteLLM and Portkey serve well under the rate on one core (c=64 cells): their
                # figure would be queueing, not latency.
                if who in ("litellm", "portkey"):
                    continue
                url, body, hdr = self.target(who, "openai", "small")
                r = self.load(url, body, hdr, 64, secs=self.a.secs, rate=rate)
                data.setdefault(who, []).append(r)
                self.check(r["errors"] == 0, f"rate {who}: {r['errors']} errors")
        self.results["stages"]["rate"] = {"rate": rate, "runs": data}

    # ---- stage 1c: CPU per request at c=8
    def stage_cpu(self):
        n = 2000 if self.quick else self.a.cpu_requests
        data = {}
        for rnd in range(self.rounds):
            log(f"cpu round {rnd + 1}/{self.rounds} ({n} requests at c=8)")
            for who, proc in self.contenders():
                url, body, hdr = self.target(who, "openai", "small")
                nn = n if who != "litellm" else max(500, n // 20)
                if who == "portkey":  # a few hundred req/s here: keep the cell short
                    nn = max(500, n // 5)
                pids = {"mock": self.mock_a.pid}
                if proc is not None:
                    pids[who] = proc.pid
                before = {k: cpu_seconds(p) for k, p in pids.items()}
                r = self.load(url, body, hdr, 8, n=nn)
                after = {k: cpu_seconds(p) for k, p in pids.items()}
                per = {k: (after[k] - before[k]) / max(1, r["ok"]) * 1e6 for k in pids}
                data.setdefault(who, []).append({"requests": nn, "ok": r["ok"], "errors": r["errors"],
                                                 "cpu_us_per_req": per, "rps": r["rps"]})
                self.check(r["ok"] == nn and r["errors"] == 0, f"cpu {who}: {r['ok']}/{nn} ok, {r['errors']} errors")
        self.results["stages"]["cpu"] = data
        self.results["rss_idle_after_load_kb"] = mem_kb(self.gw.pid, "VmRSS")

    # ---- stage 2: streaming
    def stream_plan(self, interval_ms):
        text = TOKENS
        set_plan(self.mock_a, {"kind": "ok", "chunks": 64, "chunk_interval_ms": interval_ms, "text": text})

    def stage_streams(self):
        self.stream_plan(20)
        data = {}
        conc = 4 if self.quick else self.a.paced_streams
        for rnd in range(self.rounds):
            log(f"paced-stream round {rnd + 1}/{self.rounds} ({conc} streams, 64 chunks at 20 ms)")
            for d in ("openai", "anthropic"):
                # "gateway-1core": the gateway moved onto the load core for the run (no cross-core
                # wake-ups), as for the c=1 latency cells.
                for who in ("direct", "gateway", "gateway-1core"):
                    url, body, hdr = self.target(who.split("-")[0], d, "small", stream=True)
                    if who == "gateway-1core":
                        pin(self.gw.pid, LOAD_CORE)
                    try:
                        j = self.client_json(["streams", "--url", url, "--body", body, *hflags(hdr),
                                              "-c", conc, "--chunks", 64])
                    finally:
                        if who == "gateway-1core":
                            pin(self.gw.pid, GW_CORE)
                    data.setdefault(d, {}).setdefault(who, []).append(j)
                    self.check(j["complete"] == conc and j["lost"] == 0 and j["out_of_order"] == 0
                               and j["duplicates"] == 0,
                               f"paced streams {who} {d}: {j['complete']}/{conc} complete, lost {j['lost']}, "
                               f"out of order {j['out_of_order']}, dup {j['duplicates']}, error {j['first_error']}")
        self.results["stages"]["streams"] = data

        # Capacity: many concurrent paced streams through the gateway.
        n = self.a.capacity if not self.quick else 200
        interval = self.a.capacity_interval_ms
        self.stream_plan(interval)
        log(f"capacity: {n} concurrent streams, 64 chunks at {interval} ms, opened at {self.a.open_rate}/s")
        url, body, hdr = self.target("gateway", "anthropic", "small", stream=True)
        hwm_before = mem_kb(self.gw.pid, "VmHWM")
        j = self.client_json(["streams", "--url", url, "--body", body, *hflags(hdr), "-c", n, "--chunks", 64,
                              "--open-rate", self.a.open_rate, "--rss-pid", self.gw.pid, "--timeout", 600])
        j["gateway_vmhwm_kb"] = mem_kb(self.gw.pid, "VmHWM")
        j["gateway_vmhwm_before_kb"] = hwm_before
        j["interval_ms"] = interval
        self.results["stages"]["capacity"] = j
        self.check(j["complete"] == n and j["lost"] == 0,
                   f"capacity: {j['complete']}/{n} complete, lost {j['lost']}, peak open {j['peak_open']}, "
                   f"error {j['first_error']}")
        set_plan(self.mock_a, {"kind": "ok"})
        time.sleep(1)
        self.results["rss_idle_after_streams_kb"] = mem_kb(self.gw.pid, "VmRSS")

    # ---- stage: all three dialects, all nine client × backend combinations
    def dialect_body(self, client, backend, stream, who="gateway"):
        """A small request in `client` dialect for the route whose backend speaks `backend`
        (or, for who="upstream", the mock's own model name: direct and nginx)."""
        model = route_model(backend) if who == "gateway" else upstream_model(client)
        body = self.work / f"body-{client}-to-{backend}-{who}-{'stream' if stream else 'plain'}.json"
        if not body.exists():
            body.write_bytes(request_body(client, "small", model, stream))
        return body

    def stage_translate(self):
        # Per pair (client dialect → backend dialect), through the same gateway in the same round:
        # - c=1 non-streaming latency, against the same-dialect route of the client's dialect;
        # - gateway CPU per non-streaming request (c=8);
        # - gateway CPU per relayed stream event: streams of many events sent as fast as the mock
        #   can (chunk_interval_ms 0), gateway CPU divided by the content events the client got.
        #   A paced stream's inter-chunk gap is noise-bound on this VM (BENCHMARKS.md section 3);
        #   CPU time is not. Every chunk is checked (once, in order) as in the streams stage.
        pairs = [(c, b) for c in DIALECTS for b in DIALECTS]
        n_cpu = 300 if self.quick else self.a.translate_cpu_requests
        conc = 2 if self.quick else self.a.translate_streams
        chunks = 100 if self.quick else self.a.translate_chunks
        url = {d: f"http://{self.gw.addr}{PATHS[d]}" for d in DIALECTS}
        set_plan(self.mock_a, {"kind": "ok"})
        for c, b in pairs:
            self.load(url[c], self.dialect_body(c, b, False), headers_for(c), 1, n=100 if self.quick else 2000)
        fast = {"kind": "ok", "chunks": chunks, "chunk_interval_ms": 0,
                "text": "".join("k%05d " % i for i in range(chunks))}
        data = {"latency": {}, "cpu": {}, "streams": {}, "chunks": chunks, "streams_per_run": conc,
                "cpu_requests": n_cpu}
        for rnd in range(self.rounds):
            log(f"translate round {rnd + 1}/{self.rounds}: 9 client × backend pairs")
            set_plan(self.mock_a, {"kind": "ok"})
            for c, b in pairs:
                key = f"{c}>{b}"
                body, hdr = self.dialect_body(c, b, False), headers_for(c)
                if self.quick:
                    r = self.load(url[c], body, hdr, 1, n=300)
                else:
                    r = self.load(url[c], body, hdr, 1, secs=self.a.secs)
                data["latency"].setdefault(key, []).append(r)
                self.check(r["ok"] > 0 and r["errors"] == 0,
                           f"translate {key} c=1: {r['ok']} ok, {r['errors']} errors ({r['error_detail']})")
                t0, n0 = cpu_seconds(self.gw.pid), cpu_ns(self.gw.pid)
                r = self.load(url[c], body, hdr, 8, n=n_cpu)
                t1, n1 = cpu_seconds(self.gw.pid), cpu_ns(self.gw.pid)
                ok = max(1, r["ok"])
                data["cpu"].setdefault(key, []).append({
                    "requests": n_cpu, "ok": r["ok"], "errors": r["errors"], "rps": r["rps"],
                    "cpu_us_per_req": (n1 - n0) / ok / 1e3, "cpu_us_per_req_ticks": (t1 - t0) / ok * 1e6})
                self.check(r["ok"] == n_cpu and r["errors"] == 0,
                           f"translate cpu {key}: {r['ok']}/{n_cpu} ok, {r['errors']} errors ({r['error_detail']})")
            set_plan(self.mock_a, fast)
            for c, b in pairs:
                key = f"{c}>{b}"
                body = self.dialect_body(c, b, True)
                t0, n0 = cpu_seconds(self.gw.pid), cpu_ns(self.gw.pid)
                j = self.client_json(["streams", "--url", url[c], "--body", body, *hflags(headers_for(c)),
                                      "-c", conc, "--chunks", chunks])
                t1, n1 = cpu_seconds(self.gw.pid), cpu_ns(self.gw.pid)
                ev = max(1, j["chunks_received"])
                j["cpu_us_per_event"] = (n1 - n0) / ev / 1e3
                j["cpu_us_per_event_ticks"] = (t1 - t0) / ev * 1e6
                data["streams"].setdefault(key, []).append(j)
                self.check(j["complete"] == conc and j["lost"] == 0 and j["out_of_order"] == 0
                           and j["duplicates"] == 0,
                           f"translate streams {key}: {j['complete']}/{conc} complete, lost {j['lost']}, "
                           f"out of order {j['out_of_order']}, dup {j['duplicates']}, error {j['first_error']}")
        set_plan(self.mock_a, {"kind": "ok"})
        self.results["stages"]["translate"] = data

    # ---- stage: real agent request bodies, same-dialect and translated, one core
    def stage_agents(self):
        # c=1 non-streaming latency of captured agent requests (and a Claude Code body grown to
        # ~150 KB), direct vs nginx vs the gateway's same-dialect route vs the gateway translating
        # to each other dialect, with every proxy moved onto the load core for the whole stage
        # ("one core", as the latency stage's one-core cells: no cross-core wake-ups). The small
        # bodies of each dialect are measured in the same round, so the per-KB slope of the
        # added latency is (added(agent) − added(small)) / (KB(agent) − KB(small)).
        cells = [(f"small-{d}", d, json.loads(request_body(d, "small", "x", False))) for d in DIALECTS]
        cells += [(name, d, agent_body(fx)) for name, d, fx in AGENT_BODIES]
        # The agent's own anthropic-beta header goes along: Claude Code's mid-conversation
        # `system` turns are only valid under its `per-turn-control` beta (the mock checks).
        hdrs = {f"small-{d}": headers_for(d) for d in DIALECTS}
        for name, d, fx in AGENT_BODIES:
            captured = json.loads((FIXTURES / f"{fx or AGENT_GROWN_FROM}.json").read_text())["headers"]
            hdrs[name] = headers_for(d) + [f"{k}: {v}" for k, v in captured.items() if k == "anthropic-beta"]
        files, sizes = {}, {}
        for name, d, b in cells:
            for who in ("upstream",) + DIALECTS:
                model = upstream_model(d) if who == "upstream" else route_model(who)
                raw = json.dumps(dict(b, model=model, stream=False), separators=(",", ":"),
                                 ensure_ascii=False).encode()
                path = self.work / f"agent-{name}-{who}.json"
                path.write_bytes(raw)
                files[(name, who)] = path
            sizes[name] = files[(name, "upstream")].stat().st_size

        def contenders(d):
            out = [("direct", self.mock_a.addr, "upstream")]
            if self.nginx:
                out.append(("nginx", self.nginx.addr, "upstream"))
            out.append(("gateway", self.gw.addr, d))
            out += [(f"gateway→{b}", self.gw.addr, b) for b in DIALECTS if b != d]
            return out

        set_plan(self.mock_a, {"kind": "ok"})
        moved = [p for p in (self.gw, self.nginx) if p is not None]
        for p in moved:
            pin(p.pid, LOAD_CORE)
        data = {"bytes": sizes, "dialect": {name: d for name, d, _ in cells}, "latency": {}}
        try:
            log("agents: warm-up")
            for name, d, _ in cells:
                for who, addr, f in contenders(d):
                    self.load(f"http://{addr}{PATHS[d]}", files[(name, f)], hdrs[name], 1,
                              n=5 if self.quick else 300)
            for rnd in range(self.rounds):
                log(f"agents round {rnd + 1}/{self.rounds} ({len(cells)} bodies, c=1, one core)")
                for name, d, _ in cells:
                    for who, addr, f in contenders(d):
                        u = f"http://{addr}{PATHS[d]}"
                        if self.quick:
                            r = self.load(u, files[(name, f)], hdrs[name], 1, n=30)
                        else:
                            r = self.load(u, files[(name, f)], hdrs[name], 1, secs=self.a.agents_secs)
                        data["latency"].setdefault(name, {}).setdefault(who, []).append(r)
                        self.check(r["ok"] > 0 and r["errors"] == 0,
                                   f"agents {name} {who}: {r['ok']} ok, {r['errors']} errors ({r['error_detail']})")
        finally:
            for p in moved:
                pin(p.pid, GW_CORE)
        # What a memcpy of each body costs on this machine (the goal's yardstick).
        data["memcpy_ns"] = {name: memcpy_ns(n) for name, n in sizes.items()}
        self.results["stages"]["agents"] = data

    # ---- stage 3: failover
    def stage_failover(self):
        n = 3 if self.quick else self.a.failover_requests
        n_stall = 1 if self.quick else 5
        set_plan(self.mock_a, {"kind": "ok"})
        set_plan(self.mock_b, {"kind": "ok"})
        gw = f"http://{self.gw.addr}/v1/messages"
        direct_b = f"http://{self.mock_b.addr}/v1/messages"
        hdr = headers_for("anthropic")

        def body(model, stream):
            p = self.work / f"fo-{model}-{stream}.json"
            p.write_bytes(request_body("anthropic", "small", model, stream=stream))
            return p

        def probe(url, bodyfile, count, stream, warmup=1, fresh=None):
            # back to back (no pause): an idle pause lets the vCPUs halt, and waking them costs
            # this VM ~1 ms per request, which would swamp what is measured
            args = ["probe", "--url", url, "--body", bodyfile, *hflags(hdr), "-n", count, "--warmup", warmup]
            if fresh and self.has_health:
                # The gateway ejects a backend it gave up on: reset it (untimed) so each request
                # measures a fresh failure, not a skip of the primary the previous one ejected.
                args += ["--before-each", f"http://{self.gw.addr}/admin/backends/{fresh}/reset"]
            if stream:
                args.append("--stream")
            return self.client_json(args)

        base = {False: probe(direct_b, body("claude-bench", False), max(n, 10), False, warmup=3),
                True: probe(direct_b, body("claude-bench", True), max(n, 10), True, warmup=3)}
        # The same route through the gateway with a healthy primary: the hop itself, so the part
        # of a failover that is the failover shows (failover time − this).
        set_plan(self.mock_a, {"kind": "ok"})
        gw_ok = {False: probe(gw, body("fo", False), max(n, 10), False, warmup=3),
                 True: probe(gw, body("fo", True), max(n, 10), True, warmup=3)}
        modes = [
            # name, route, primary behaviour, stream, count, expected attempts note
            ("500, retries 2, default backoff (250 ms base)", "fo", {"kind": "status", "status": 500}, False, n),
            ("500, retries 2, backoff 0 (non-sleep part)", "fo-nosleep", {"kind": "status", "status": 500}, False, n),
            ("500, retries 0", "fo-noretry", {"kind": "status", "status": 500}, False, n),
            ("529, retries 2, default backoff (250 ms base)", "fo", {"kind": "status", "status": 529}, False, n),
            ("529, retries 2, backoff 0 (non-sleep part)", "fo-nosleep", {"kind": "status", "status": 529}, False, n),
            ("529, retries 0", "fo-noretry", {"kind": "status", "status": 529}, False, n),
            ("429, Retry-After 120 > max_retry_after", "fo",
             {"kind": "status", "status": 429, "headers": {"retry-after": "120"}}, False, n),
            ("connection refused (closed port)", "fo-refused", None, False, n),
            ("reset before any byte", "fo", {"kind": "reset", "after_chunks": 0}, False, n),
            ("stall before first byte (stream, ttft_timeout 1 s)", "fo",
             {"kind": "stall", "after_chunks": 0, "heartbeat_ms": 100}, True, n_stall),
        ]
        data = {}
        for name, route, behavior, stream, count in modes:
            set_plan(self.mock_a, behavior or {"kind": "ok"})
            log(f"failover: {name} ({count} requests)")
            warm = 0 if stream and self.quick else 1
            seen0 = http("GET", f"http://{self.mock_a.addr}/_mock/stats")["requests"]
            # one unrecorded request first: it opens the client's and the fallback's connections
            primary = "refused-anthropic" if route == "fo-refused" else "primary-anthropic"
            j = probe(gw, body(route, stream), count, stream, warmup=warm, fresh=primary)
            seen = (http("GET", f"http://{self.mock_a.addr}/_mock/stats")["requests"] - seen0) / (count + warm)
            set_plan(self.mock_a, {"kind": "ok"})
            key = "ttft_us"
            added = None
            if j[key].get("p50") is not None:
                added = j[key]["p50"] - base[stream][key]["p50"]
            runs = j["runs"]
            backends = sorted({r.get("backend") or "?" for r in runs})
            statuses = sorted({r.get("status") for r in runs if "status" in r})
            attempts = sorted({r.get("attempts") or "?" for r in runs})
            hop = gw_ok[stream][key].get("p50")
            data[name] = {"route": route, "stream": stream, "gateway": j, "added_p50_us": added,
                          "beyond_healthy_p50_us": (j[key]["p50"] - hop) if hop is not None and j[key].get("p50") is not None else None,
                          "fallback_direct_p50_us": base[stream][key]["p50"], "backends": backends,
                          "statuses": statuses, "attempts": attempts, "primary_saw_per_request": seen,
                          "samples_us": [r.get("ttft_us") for r in runs]}
            self.check(statuses == [200] and backends == ["fallback-anthropic"],
                       f"failover {name}: statuses {statuses}, backends {backends}")
        # After content there is no failover (by design): a stall or a reset mid-stream must end
        # the stream with an error event. Measured from the last chunk to the error event, minus
        # the clock that had to run first (the stall timeout; the mock's 25 ms pause before its
        # RST, which lets the chunks already written reach the gateway).
        for name, behavior, clock_us, clock, count in (
                ("stall mid-stream (after 2 chunks, stall_timeout 1 s)",
                 {"kind": "stall", "after_chunks": 2, "heartbeat_ms": 100}, 1_000_000, "stall_timeout", n_stall),
                ("reset mid-stream (after 2 chunks)", {"kind": "reset", "after_chunks": 2}, 25_000,
                 "the reset", n)):
            set_plan(self.mock_a, behavior)
            log(f"failover: {name}")
            j = probe(gw, body("fo", True), count, True, warmup=0 if self.quick else 1,
                      fresh="primary-anthropic")
            set_plan(self.mock_a, {"kind": "ok"})
            data[name] = {"route": "fo", "stream": True, "gateway": j, "clock_us": clock_us, "clock": clock,
                          "last_content_to_error_p50_us": j["last_content_to_error_us"].get("p50"),
                          "statuses": sorted({r.get("status") for r in j["runs"] if "status" in r})}
            self.check(j["last_content_to_error_us"].get("count", 0) == count,
                       f"failover {name}: no error event after content")
        cooldown = self.cooldown_cost(gw, body("fo", False), probe, n) if self.has_health else None
        self.results["stages"]["failover"] = {"baseline": base, "gateway_healthy": gw_ok, "modes": data,
                                              "cooldown": cooldown}

    def cooldown_cost(self, gw, bodyfile, probe, n):
        """A request while the primary cools down vs the same request with the primary healthy."""
        set_plan(self.mock_a, {"kind": "ok"})
        healthy = probe(gw, bodyfile, max(n, 10), False)
        # A Retry-After at least cooldown.base (1 h here) ejects the primary at once.
        set_plan(self.mock_a, {"kind": "status", "status": 429, "headers": {"retry-after": "7200"}})
        probe(gw, bodyfile, 1, False, warmup=0)
        log("cooldown: primary ejected; measuring requests that skip it")
        cooling = probe(gw, bodyfile, max(n, 10), False)
        set_plan(self.mock_a, {"kind": "ok"})
        try:
            http("POST", f"http://{self.gw.addr}/admin/backends/primary-anthropic/reset", {})
        except Exception as e:  # best effort: nothing runs after this stage
            log(f"admin reset failed: {e}")
        att = sorted({r.get("attempts") or "?" for r in cooling["runs"]})
        backends = sorted({r.get("backend") or "?" for r in cooling["runs"]})
        self.check(att == ["1"] and backends == ["fallback-anthropic"],
                   f"cooldown: attempts {att}, backends {backends} (expected the primary skipped)")
        hp, cp = healthy["ttft_us"].get("p50"), cooling["ttft_us"].get("p50")
        return {"healthy": healthy, "cooling": cooling, "attempts": att, "backends": backends,
                "added_p50_us": (cp - hp) if hp is not None and cp is not None else None}

    # ---- stage: failover across gateways (--peers)
    def stage_peers_failover(self):
        if self.a.peers:
            peers.stage_peers_failover(self, http, set_plan, request_body, hflags, log)

    # ---- run everything
    # ---- memory after a burst (its own mock and gateway: the start figure must be a fresh process)
    def stage_burst(self):
        n = 200 if self.quick else self.a.burst_streams
        settle = 3 if self.quick else 30
        log(f"burst: {n} concurrent paced streams through a fresh gateway, RSS {settle} s after")
        cmd = [sys.executable, str(Path(__file__).resolve().parent / "burst_memory.py"), "--bin", str(self.bin),
               "--client", str(self.client), "--streams", str(n), "--settle", str(settle)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            self.fail(f"burst: burst_memory.py failed: {r.stderr[-800:]}")
            return
        j = json.loads(r.stdout.strip().splitlines()[-1])
        j["settle_s"] = settle
        self.results["stages"]["burst"] = j

    def run(self):
        try:
            self.setup()
            stages = self.a.stages.split(",")
            if self.a.peers and "failover" in stages and "peers_failover" not in stages:
                stages.append("peers_failover")
            for stage in stages:
                getattr(self, f"stage_{stage}")()
        finally:
            self.results["gateway_vmhwm_final_kb"] = mem_kb(self.gw.pid, "VmHWM") if getattr(self, "gw", None) else None
            self.stop_all()
        self.results["failures"] = self.failures
        return self.results


# ---------------------------------------------------------------------------- configs


DIALECTS = ("openai", "anthropic", "responses")
PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages", "responses": "/v1/responses"}
LABEL = {"openai": "OpenAI chat", "anthropic": "Anthropic", "responses": "Responses"}


def route_model(dialect):
    """The route whose chain is the primary mock speaking `dialect` (a client of another
    dialect on it is translated)."""
    return f"bench-{dialect}"


def upstream_model(dialect):
    return "claude-bench" if dialect == "anthropic" else "gpt-bench"


def headers_for(dialect):
    if dialect == "anthropic":
        return ["content-type: application/json", f"x-api-key: {KEY}", "anthropic-version: 2023-06-01"]
    return ["content-type: application/json", f"authorization: Bearer {KEY}"]


def hflags(headers):
    out = []
    for h in headers:
        out += ["-H", h]
    return out


def request_body(dialect, size, model, stream):
    if size == "small":
        text = "Say hello in one short sentence, please."
    else:
        # ~50 KB of prose-like text in one user message.
        words = "the quick brown fox jumps over the lazy dog and keeps running through the field ".split()
        out, n = [], 0
        i = 0
        while n < 50_000 - 120:
            w = words[i % len(words)]
            out.append(w)
            n += len(w) + 1
            i += 1
        text = " ".join(out)
    body = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": text}]}
    if dialect == "openai":
        body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 64}
    elif dialect == "responses":
        body = {"model": model, "input": [{"role": "user", "content": text}], "max_output_tokens": 64}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "it" / "fixtures" / "agents"
# (name, client dialect, fixture): captured agent requests (tests/it/fixtures/agents, the body as
# the agent sent it); fixture None: Claude Code's turn grown to ~150 KB (see agent_body).
AGENT_GROWN_FROM = "claude_code/06_interactive_main_turn2"
AGENT_BODIES = [
    ("hermes", "openai", "hermes/01_custom_main_tools"),
    ("claude-code", "anthropic", "claude_code/06_interactive_main_turn2"),
    ("claude-code-150KB", "anthropic", None),
    ("codex", "responses", "codex/01_exec_main"),
]


def agent_body(fixture):
    """The body of a captured agent request. None: Claude Code's interactive turn 2 with its
    conversation turns before the last user message repeated until the body reaches 150 KB (the
    size issue 18 names for a long Claude Code session: same tools, same 3 system blocks)."""
    if fixture is not None:
        return json.loads((FIXTURES / f"{fixture}.json").read_text())["body"]
    body = agent_body(AGENT_GROWN_FROM)
    head, last = body["messages"][:-1], body["messages"][-1]
    msgs = list(head)
    while len(json.dumps(dict(body, messages=msgs + [last]), separators=(",", ":"), ensure_ascii=False)) < 150_000:
        msgs += head
    return dict(body, messages=msgs + [last])


def gateway_config(a, b, closed_port, health=True, session_from=None, extra_routes=""):
    # Ejection only by a Retry-After of an hour or more (the cooldown stage sends one).
    health_block = """health:
  failure_threshold: { default: 1000000, connection: 1000000, timeout: 1000000 }
  cooldown: { base: 1h, max: 1h }
""" if health else ""
    if health and session_from:
        # Where the gateway looks for a session id (--session-from; default: the gateway's own
        # default, which derives one from the conversation when the client sends none).
        health_block += f"  session_from: [{session_from}]\n"
    return health_block + f"""# generated by bench/rig.py
listen: 127.0.0.1:0
backends:
  primary-openai: {{ api: openai_chat, base_url: "http://{a}/v1", api_key_env: BENCH_KEY_A }}
  fallback-openai: {{ api: openai_chat, base_url: "http://{b}/v1", api_key_env: BENCH_KEY_B }}
  primary-anthropic: {{ api: anthropic_messages, base_url: "http://{a}", api_key_env: BENCH_KEY_A }}
  fallback-anthropic: {{ api: anthropic_messages, base_url: "http://{b}", api_key_env: BENCH_KEY_B }}
  primary-responses: {{ api: openai_responses, base_url: "http://{a}/v1", api_key_env: BENCH_KEY_A }}
  fallback-responses: {{ api: openai_responses, base_url: "http://{b}/v1", api_key_env: BENCH_KEY_B }}
  refused-anthropic: {{ api: anthropic_messages, base_url: "http://127.0.0.1:{closed_port}", api_key_env: BENCH_KEY_A }}
routes:
  bench-openai:
    chain:
      - {{ backend: primary-openai, model: gpt-bench }}
      - {{ backend: fallback-openai, model: gpt-bench }}
  bench-anthropic:
    chain:
      - {{ backend: primary-anthropic, model: claude-bench }}
      - {{ backend: fallback-anthropic, model: claude-bench }}
  # A client of another dialect on any bench-* route is translated (translate, agents stages).
  bench-responses:
    chain:
      - {{ backend: primary-responses, model: gpt-bench }}
      - {{ backend: fallback-responses, model: gpt-bench }}
  fo:
    chain:
      - {{ backend: primary-anthropic, model: claude-bench }}
      - {{ backend: fallback-anthropic, model: claude-bench }}
    failover: {{ ttft_timeout: 1s, stall_timeout: 1s }}
  fo-nosleep:
    chain:
      - {{ backend: primary-anthropic, model: claude-bench }}
      - {{ backend: fallback-anthropic, model: claude-bench }}
    failover: {{ ttft_timeout: 1s, stall_timeout: 1s, backoff: {{ base: 0ms, max: 0ms }} }}
  fo-noretry:
    chain:
      - {{ backend: primary-anthropic, model: claude-bench }}
      - {{ backend: fallback-anthropic, model: claude-bench }}
    failover: {{ ttft_timeout: 1s, stall_timeout: 1s, retries: 0 }}
  fo-refused:
    chain:
      - {{ backend: refused-anthropic, model: claude-bench }}
      - {{ backend: fallback-anthropic, model: claude-bench }}
    failover: {{ ttft_timeout: 1s, stall_timeout: 1s }}
{extra_routes}failover:
  # The rig sends bursts of failing requests; a budget would turn measured retries into failovers.
  retry_budget: {{ ratio: 10, min_per_sec: 1000000 }}
"""


def nginx_config(prefix, port, mock):
    return f"""# generated by bench/rig.py: a plain keep-alive reverse proxy, one worker
daemon off;
master_process off;
worker_processes 1;
error_log {prefix}/error.log warn;
pid {prefix}/nginx.pid;
events {{ worker_connections 30000; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    client_max_body_size 32m;
    client_body_buffer_size 128k;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    upstream mock {{
        server {mock};
        keepalive 256;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""


def litellm_config(a, b, extra=None):
    # Same chain as the gateway: primary mock, then the fallback mock (LiteLLM `fallbacks`).
    # `extra` (--peers): (more model_list entries, more fallbacks) for the failover comparison.
    models, fallbacks = extra or ("", "")
    fallbacks = f", {fallbacks}" if fallbacks else ""
    return f"""# generated by bench/rig.py
model_list:
  - model_name: bench-openai
    litellm_params: {{ model: openai/gpt-bench, api_base: "http://{a}/v1", api_key: os.environ/BENCH_KEY_A }}
  - model_name: bench-openai-fallback
    litellm_params: {{ model: openai/gpt-bench, api_base: "http://{b}/v1", api_key: os.environ/BENCH_KEY_B }}
  - model_name: bench-anthropic
    litellm_params: {{ model: anthropic/claude-bench, api_base: "http://{a}", api_key: os.environ/BENCH_KEY_A }}
  - model_name: bench-anthropic-fallback
    litellm_params: {{ model: anthropic/claude-bench, api_base: "http://{b}", api_key: os.environ/BENCH_KEY_B }}
{models}router_settings:
  fallbacks: [{{ "bench-openai": ["bench-openai-fallback"] }}, {{ "bench-anthropic": ["bench-anthropic-fallback"] }}{fallbacks}]
  num_retries: 0
litellm_settings:
  telemetry: false
  set_verbose: false
  json_logs: false
  drop_params: true
general_settings: {{}}
"""


def machine():
    out = {}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for k in ("Model name", "CPU(s)", "Hypervisor vendor"):
            m = re.search(rf"^{re.escape(k)}:\s+(.*)$", lscpu, re.M)
            if m:
                out[k] = m.group(1)
    except OSError:
        pass
    out["kernel"] = os.uname().release
    out["mem_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return out


# ----------------------------------------------------------------------------- report


def targets(res, quick=False):
    """Rows (target, goal, measured, verdict) from the issue's target list. A quick (smoke)
    run judges nothing: debug binaries, small counts and a machine shared with whatever else
    runs (CI, a test suite) measure the rig, not the gateway, so its verdicts would only
    look like failures."""
    st = res["stages"]
    rows = []

    def verdict(ok):
        if ok is None:
            return "—"
        if quick:
            return "not judged (smoke)"
        return "met" if ok else "**missed**"

    lat = st.get("latency", {})

    def added(cell, who, q):
        by = lat.get(cell)
        if not by or who not in by:
            return None
        return med([r[q] - d[q] for r, d in zip(by[who], by["direct"]) if r[q] is not None and d[q] is not None])

    for c, pl, goal, label in ((1, "split", 50, "c=1, proxy on its own core"),
                               (1, "shared", 50, "c=1, one core (no cross-core wake-ups)"),
                               (64, "split", 500, "c=64")):
        vals = {f"{d} {s}": added(f"{d}/{s}/c{c}/{pl}", "gateway", "p99")
                for d in ("openai", "anthropic") for s in ("small", "large")}
        vals = {k: v for k, v in vals.items() if v is not None}
        if vals:
            worst = max(vals.values())
            ng = [added(f"{d}/{s}/c{c}/{pl}", "nginx", "p99") for d in ("openai", "anthropic") for s in ("small", "large")]
            ng = [x for x in ng if x is not None]
            extra = f"; nginx floor worst {fmt(max(ng))} µs" if ng else ""
            rows.append((f"added p99, {label}", f"≤ {goal} µs",
                         f"worst cell {fmt(worst)} µs, best {fmt(min(vals.values()))} µs{extra}", verdict(worst <= goal)))
    cpu = st.get("cpu", {})
    if "gateway" in cpu:
        v = med([r["cpu_us_per_req"]["gateway"] for r in cpu["gateway"]])
        extra = ""
        if "nginx" in cpu:
            extra = f" (nginx {fmt(med([r['cpu_us_per_req']['nginx'] for r in cpu['nginx']]), 1)} µs)"
        rows.append(("CPU per request", "≤ 60 µs", f"{fmt(v, 1)} µs{extra}", verdict(v <= 60)))
    cell = lat.get("openai/small/c64/split")
    if cell and "gateway" in cell:
        ratios = [g["rps"] / d["rps"] for g, d in zip(cell["gateway"], cell["direct"]) if d["rps"]]
        v = med(ratios)
        rows.append(("req/s on one core vs direct (c=64, OpenAI small)", "≥ 60 %",
                     f"{v * 100:.0f} % ({fmt(med([r['rps'] for r in cell['gateway']]))} vs "
                     f"{fmt(med([r['rps'] for r in cell['direct']]))} req/s)", verdict(v >= 0.6)))
        if "litellm" in cell:
            lr = med([r["rps"] for r in cell["litellm"]])
            v = med([r["rps"] for r in cell["gateway"]]) / lr if lr else None
            rows.append(("req/s vs LiteLLM (one worker, same rig)", "≥ 50×",
                         f"{v:.0f}× ({fmt(lr)} req/s for LiteLLM)" if v else "LiteLLM answered nothing",
                         verdict(v is not None and v >= 50)))
        else:
            rows.append(("req/s vs LiteLLM (one worker, same rig)", "≥ 50×", "not run (bench/run --litellm)", "—"))
    streams = st.get("streams", {})
    for who, label in (("gateway", "proxy on its own core"), ("gateway-1core", "one core")):
        if not streams or any(who not in by for by in streams.values()):
            continue
        tt = [med([r["ttft_us"]["p50"] - x["ttft_us"]["p50"] for r, x in zip(by[who], by["direct"])])
              for by in streams.values()]
        gp = [med([r["gap_us"]["p99"] - x["gap_us"]["p99"] for r, x in zip(by[who], by["direct"])])
              for by in streams.values()]
        rows.append((f"added TTFT (paced SSE, p50), {label}", "≤ 100 µs", f"worst dialect {fmt(max(tt))} µs",
                     verdict(max(tt) <= 100)))
        rows.append((f"added inter-chunk gap p99, {label}", "≤ 10 µs", f"worst dialect {fmt(max(gp))} µs",
                     verdict(max(gp) <= 10)))
    cap = st.get("capacity")
    if cap:
        ok = cap["lost"] == 0 and cap["complete"] == cap["streams"]
        rows.append((f"{cap['streams']:,} concurrent paced streams, no lost frame", "0 lost",
                     f"{cap['complete']:,} complete, {cap['lost']} lost, {cap['out_of_order'] + cap['duplicates']} out of order, "
                     f"peak {cap['peak_open']:,} open at once", verdict(ok)))
        mb = cap["gateway_vmhwm_kb"] / 1024
        rows.append((f"RSS with {cap['streams']:,} open streams", "≤ 150 MB", f"{mb:.1f} MB (VmHWM)", verdict(mb <= 150)))
    # Issue 18's goals: a plain proxy's cost, side by side in the same run.
    if "gateway" in cpu and "nginx" in cpu:
        g = med([r["cpu_us_per_req"]["gateway"] for r in cpu["gateway"]])
        n = med([r["cpu_us_per_req"]["nginx"] for r in cpu["nginx"]])
        rows.append(("CPU per request vs nginx (issue 18)", "≤ 1.25×", f"{g / n:.2f}× ({fmt(g, 1)} vs {fmt(n, 1)} µs)",
                     verdict(g / n <= 1.25)))
    if cell and "gateway" in cell and "nginx" in cell:
        worst = None
        for d in ("openai", "anthropic"):
            for sz in ("small", "large"):
                c64 = lat.get(f"{d}/{sz}/c64/split")
                if c64 and "gateway" in c64 and "nginx" in c64:
                    r = med([r["rps"] for r in c64["gateway"]]) / med([r["rps"] for r in c64["nginx"]])
                    worst = r if worst is None else min(worst, r)
        rows.append(("req/s on one core at c=64 vs nginx, worst cell (issue 18)", "≥ 0.8×", f"{worst:.2f}×",
                     verdict(worst >= 0.8)))
    for q in ("p50", "p99"):
        gaps = []
        for d in ("openai", "anthropic"):
            for sz in ("small", "large"):
                g = added(f"{d}/{sz}/c1/shared", "gateway", q)
                n = added(f"{d}/{sz}/c1/shared", "nginx", q)
                if g is not None and n is not None:
                    gaps.append(g - n)
        if gaps:
            rows.append((f"added {q} at c=1, one core, over nginx, worst cell (issue 18)", "≤ +10 µs",
                         f"+{fmt(max(gaps))} µs (best cell {fmt(min(gaps))})", verdict(max(gaps) <= 10)))
    burst = st.get("burst")
    if burst:
        over = (burst[f"rss_{burst['settle_s']}s_kb"] - burst["rss_warm_kb"]) / 1024
        rows.append((f"memory {burst['settle_s']} s after a {burst['streams']:,}-stream burst (issue 18)", "≤ start + 20 MB",
                     f"start {burst['rss_warm_kb'] / 1024:.1f} MB, after +{over:.1f} MB", verdict(over <= 20)))
    if res.get("rss_idle_startup_kb"):
        mb = res["rss_idle_startup_kb"] / 1024
        after = res.get("rss_idle_after_load_kb")
        extra = f"; {after / 1024:.1f} MB idle after load" if after else ""
        rows.append(("RSS idle", "≤ 15 MB", f"{mb:.1f} MB at start{extra}", verdict(mb <= 15)))
    tr = st.get("translate")
    if tr:
        worst = max(((med([sub(r["p50"], x["p50"]) for r, x in zip(runs, tr["latency"][f"{k.split('>')[0]}>{k.split('>')[0]}"])]) or 0), k)
                    for k, runs in tr["latency"].items() if k.split(">")[0] != k.split(">")[1])
        ev = {k: med([r["cpu_us_per_event"] for r in runs]) for k, runs in tr["streams"].items()}
        rq = {k: med([r["cpu_us_per_req"] for r in runs]) for k, runs in tr["cpu"].items()}
        lost = sum(r["lost"] + r["out_of_order"] + r["duplicates"] for runs in tr["streams"].values() for r in runs)
        xk = [k for k in ev if k.split(">")[0] != k.split(">")[1]]
        rows.append(("all three dialects, all six translation pairs: per-request and per-event cost",
                     "reported (issue 18)",
                     f"worst pair added p50 (c=1, vs same-dialect route) {signed(worst[0])} µs ({worst[1]}); "
                     f"gateway CPU per request {fmt(min(rq.values()), 1)}–{fmt(max(rq.values()), 1)} µs, per stream "
                     f"event {fmt(min(ev[k] for k in xk), 2)}–{fmt(max(ev[k] for k in xk), 2)} µs translated "
                     f"(same dialect {fmt(min(ev[f'{d}>{d}'] for d in DIALECTS), 2)}–{fmt(max(ev[f'{d}>{d}'] for d in DIALECTS), 2)}); "
                     f"{lost} chunks lost or out of order", "—"))
    ag = st.get("agents")
    if ag:
        sl = agent_slopes(ag)
        if sl:
            parts = [f"{name}: gateway {fmt(v['gateway'], 1)}, nginx {fmt(v.get('nginx'), 1)}, memcpy "
                     f"{fmt(v['memcpy'], 2)} ns/KB" for name, v in sl.items()]
            ok = all(v["gateway"] is not None and v["gateway"] <= v["memcpy"] for v in sl.values())
            rows.append(("real agent bodies: same-dialect added latency (p50, c=1, one core) per KB of body "
                         "(agent − small body)", "≤ a memcpy of the body",
                         "; ".join(parts), verdict(ok)))
    fo = st.get("failover", {}).get("modes", {})
    for name, r in fo.items():
        if "last_content_to_error_p50_us" in r:
            v = r["last_content_to_error_p50_us"]
            clock, label = r.get("clock_us", 1e6), r.get("clock", "stall_timeout")
            rows.append((f"failover: {name}", f"error event ≤ {label} + 5 ms",
                         f"{label} + {fmt((v - clock) / 1000 if v else None, 1)} ms",
                         verdict(v is not None and v - clock <= 5000)))
            continue
        v = r["added_p50_us"]
        if v is None:
            continue
        if "default backoff" in name:
            rows.append((f"failover: {name}", "backoff slept + ≤ 1 ms", f"{fmt(v / 1000, 1)} ms total (random backoff; "
                         "the non-sleep part is the next row)", "—"))
        elif "stall before" in name:
            rows.append((f"failover: {name}", "≤ ttft_timeout + 5 ms", f"ttft_timeout + {fmt((v - 1e6) / 1000, 1)} ms",
                         verdict(v - 1e6 <= 5000)))
        else:
            hb = r.get("beyond_healthy_p50_us")
            extra = f" ({fmt(hb)} µs beyond a healthy request through the gateway)" if hb is not None else ""
            rows.append((f"failover: {name}", "≤ 1 ms + fallback latency", f"{fmt(v)} µs{extra}", verdict(v <= 1000)))
    cd = st.get("failover", {}).get("cooldown")
    if cd and cd.get("added_p50_us") is not None:
        v = cd["added_p50_us"]
        rows.append(("request while the primary cools down", "≤ 50 µs more than healthy",
                     f"{fmt(v)} µs (p50, skipped primary → fallback vs healthy primary)", verdict(v <= 50)))
    else:
        rows.append(("request while the primary cools down", "≤ 50 µs more than healthy",
                     "not yet measurable (health registry pending, issue 4)", "—"))
    return rows


def agent_added(ag, name, who, q="p50"):
    """Median over rounds of (who − direct) for one agents cell, µs."""
    by = ag["latency"].get(name, {})
    if who not in by:
        return None
    return med([r[q] - d[q] for r, d in zip(by[who], by["direct"]) if r[q] is not None and d[q] is not None])


def agent_slopes(ag):
    """Per agent body: ns of added p50 per KB (1,000 bytes) of body beyond the small body of the
    same dialect, for the gateway (same dialect), the gateway translating, nginx; and a memcpy's
    ns per KB of that body."""
    out = {}
    for name, d in ag["dialect"].items():
        if name.startswith("small-"):
            continue
        small = f"small-{d}"
        dkb = (ag["bytes"][name] - ag["bytes"][small]) / 1000
        row = {"kb": ag["bytes"][name] / 1000, "memcpy": ag["memcpy_ns"][name] / (ag["bytes"][name] / 1000),
               "memcpy_body_us": ag["memcpy_ns"][name] / 1000}
        for who in ag["latency"][name]:
            if who == "direct":
                continue
            a, b = agent_added(ag, name, who), agent_added(ag, small, who)
            row[who] = (a - b) * 1000 / dkb if a is not None and b is not None else None
        out[name] = row
    return out


def report(res, quick):
    L = []
    p = L.append
    st = res["stages"]
    m = res["machine"]
    p(f"Machine: {m.get('Model name')} · {m.get('CPU(s)')} CPUs · {m.get('mem_gib')} GiB · kernel {m.get('kernel')}")
    p(f"Pinning: proxy under test on core {GW_CORE}; mocks and load generator on core {LOAD_CORE}. "
      f"Load tool: {res['args']['tool']}. Rounds: {1 if quick else res['args']['rounds']} (median, min–max).")
    p("")
    p("### Targets (issue 8; issue 18's rows marked)")
    p("")
    if quick:
        p("A smoke run: it checks that every stage of the rig works (the checks that can fail it are")
        p("listed under FAILED CHECKS, if any). Its figures are informational, not measured here:")
        p("debug binaries, small counts, a shared machine. `bench/run` measures; see BENCHMARKS.md.")
        p("")
    p("| target | goal | measured | verdict |")
    p("|---|---|---|---|")
    for row in targets(res, quick):
        p("| " + " | ".join(row) + " |")
    p("")
    lat = st.get("latency")
    if lat:
        p("### Non-streaming latency (µs); added = contender − direct, per round")
        p("")
        p("| dialect | body | c | contender | p50 | p90 | p99 | added p50 | added p90 | added p99 | req/s |")
        p("|---|---|---|---|---|---|---|---|---|---|---|")
        for cell, by in lat.items():
            d, s, c, pl = cell.split("/")
            direct = by["direct"]
            for who, runs in by.items():
                row = [d, s, c[1:] + (" (one core)" if pl == "shared" else ""), who]
                for q in ("p50", "p90", "p99"):
                    row.append(fmt(med([r[q] for r in runs])))
                for q in ("p50", "p90", "p99"):
                    if who == "direct":
                        row.append("")
                    else:
                        row.append(spread([r[q] - dr[q] for r, dr in zip(runs, direct)
                                           if r[q] is not None and dr[q] is not None]))
                row.append(spread([r["rps"] for r in runs]))
                p("| " + " | ".join(str(x) for x in row) + " |")
        p("")
    rate = st.get("rate")
    if rate:
        p(f"### Constant arrival rate: {rate['rate']} req/s, c=64, OpenAI small body (oha -q, latency-corrected), µs")
        p("")
        p("| contender | p50 | p90 | p99 | added p99 |")
        p("|---|---|---|---|---|")
        direct = rate["runs"]["direct"]
        for who, runs in rate["runs"].items():
            added = "" if who == "direct" else spread([r["p99"] - d["p99"] for r, d in zip(runs, direct)])
            p(f"| {who} | {fmt(med([r['p50'] for r in runs]))} | {fmt(med([r['p90'] for r in runs]))} | "
              f"{fmt(med([r['p99'] for r in runs]))} | {added} |")
        p("")
    cpu = st.get("cpu")
    if cpu:
        p("### CPU per request (utime+stime from /proc/PID/stat, c=8, OpenAI small body), µs")
        p("")
        p("| contender | requests | proxy CPU/request | mock CPU/request | req/s at c=8 |")
        p("|---|---|---|---|---|")
        for who, runs in cpu.items():
            proxy = "" if who == "direct" else spread([r["cpu_us_per_req"][who] for r in runs], 1)
            p(f"| {who} | {runs[0]['requests']} | {proxy} | {spread([r['cpu_us_per_req']['mock'] for r in runs], 1)} | "
              f"{spread([r['rps'] for r in runs])} |")
        p("")
    s = st.get("streams")
    if s:
        p("### Paced SSE (64 chunks at 20 ms), µs; added = gateway − direct, per round")
        p("")
        p("| dialect | contender | streams×rounds complete | lost | out of order | TTFT p50 | TTFT p99 | gap p50 | gap p99 | added TTFT p50 | added gap p99 |")
        p("|---|---|---|---|---|---|---|---|---|---|---|")
        for d, by in s.items():
            direct = by["direct"]
            for who, runs in by.items():
                comp = f"{sum(r['complete'] for r in runs)}/{sum(r['streams'] for r in runs)}"
                lost = sum(r["lost"] for r in runs)
                ooo = sum(r["out_of_order"] + r["duplicates"] for r in runs)
                a1 = a2 = ""
                if who != "direct":
                    a1 = spread([r["ttft_us"]["p50"] - x["ttft_us"]["p50"] for r, x in zip(runs, direct)])  # noqa
                    a2 = spread([r["gap_us"]["p99"] - x["gap_us"]["p99"] for r, x in zip(runs, direct)])
                p(f"| {d} | {who} | {comp} | {lost} | {ooo} | {fmt(med([r['ttft_us']['p50'] for r in runs]))} | "
                  f"{fmt(med([r['ttft_us']['p99'] for r in runs]))} | {fmt(med([r['gap_us']['p50'] for r in runs]))} | "
                  f"{fmt(med([r['gap_us']['p99'] for r in runs]))} | {a1} | {a2} |")
        p("")
    tr = st.get("translate")
    if tr:
        p(f"### All three dialects, all nine client → backend pairs (small body), through one gateway, per round")
        p("")
        p(f"c=1 non-streaming latency (µs; added = pair − the same-dialect route of the client's dialect, same round); "
          f"gateway CPU (on-CPU time of its threads, /proc/PID/task/*/schedstat) per non-streaming request at c=8 "
          f"({tr['cpu_requests']} requests) and per stream event relayed ({tr['streams_per_run']} streams × "
          f"{tr['chunks']} content events, mock sending as fast as it can); every chunk checked.")
        p("")
        p("| client → backend | p50 (c=1) | p99 (c=1) | added p50 | added p99 | CPU µs/request | CPU µs/event | stream TTFT p50 | events received / expected | lost / out of order |")
        p("|---|---|---|---|---|---|---|---|---|---|")
        for k, runs in tr["latency"].items():
            c, b = k.split(">")
            same = tr["latency"][f"{c}>{c}"]
            a1 = a2 = "(same dialect)"
            if c != b:
                a1 = spread([sub(r["p50"], x["p50"]) for r, x in zip(runs, same)])
                a2 = spread([sub(r["p99"], x["p99"]) for r, x in zip(runs, same)])
            cp = tr["cpu"].get(k, [])
            sr = tr["streams"].get(k, [])
            bad = sum(r["lost"] + r["out_of_order"] + r["duplicates"] for r in sr)
            p(f"| {LABEL[c]} → {LABEL[b]} | {fmt(med([r['p50'] for r in runs]))} | {fmt(med([r['p99'] for r in runs]))} | "
              f"{a1} | {a2} | {spread([r['cpu_us_per_req'] for r in cp], 1)} | {spread([r['cpu_us_per_event'] for r in sr], 2)} | "
              f"{fmt(med([r['ttft_us']['p50'] for r in sr]))} | {sum(r['chunks_received'] for r in sr)}/{sum(r['chunks_expected'] for r in sr)} | {bad} |")
        p("")
    ag = st.get("agents")
    if ag:
        p("### Real agent request bodies, c=1 non-streaming, proxy on one core, µs; added = contender − direct, per round")
        p("")
        p("`gateway` is the same-dialect route; `gateway→X` translates the request to a backend speaking X "
          "(and the answer back). Bodies: captured agent requests (tests/it/fixtures/agents), `stream` set to false.")
        p("")
        p("| body | client dialect | bytes | contender | p50 | p99 | added p50 | added p99 | req/s |")
        p("|---|---|---|---|---|---|---|---|---|")
        for name, by in ag["latency"].items():
            direct = by["direct"]
            for who, runs in by.items():
                a1 = a2 = ""
                if who != "direct":
                    a1 = spread([sub(r["p50"], x["p50"]) for r, x in zip(runs, direct)])
                    a2 = spread([sub(r["p99"], x["p99"]) for r, x in zip(runs, direct)])
                p(f"| {name} | {ag['dialect'][name]} | {ag['bytes'][name]:,} | {who} | {fmt(med([r['p50'] for r in runs]))} | "
                  f"{fmt(med([r['p99'] for r in runs]))} | {a1} | {a2} | {spread([r['rps'] for r in runs])} |")
        p("")
        sl = agent_slopes(ag)
        whos = sorted({k for v in sl.values() for k in v} - {"kb", "memcpy", "memcpy_body_us"},
                      key=lambda w: (w != "gateway", w != "nginx", w))
        p("Slope: (added p50 of the agent body − added p50 of the small body of the same dialect) per KB "
          "(1,000 bytes) of extra body, ns/KB; memcpy: one in-cache memcpy of the body (libc via ctypes), ns/KB.")
        p("")
        p("| body | KB | " + " | ".join(f"{w} ns/KB" for w in whos) + " | memcpy ns/KB | memcpy of the body µs |")
        p("|---|---|" + "---|" * len(whos) + "---|---|")
        for name, v in sl.items():
            p(f"| {name} | {fmt(v['kb'], 1)} | " + " | ".join(fmt(v.get(w), 1) for w in whos)
              + f" | {fmt(v['memcpy'], 2)} | {fmt(v['memcpy_body_us'], 2)} |")
        p("")
    cap = st.get("capacity")
    if cap:
        gw_rss = cap["rss"][0]["peak_vmrss_kb"] if cap.get("rss") else None
        p(f"### Concurrent paced streams through the gateway (64 chunks at {cap['interval_ms']} ms)")
        p("")
        p("| streams | complete | failed | peak open at once | chunks received / expected | lost | out of order | wall s | gateway peak VmRSS | gateway VmHWM |")
        p("|---|---|---|---|---|---|---|---|---|---|")
        p(f"| {cap['streams']} | {cap['complete']} | {cap['failed']} | {cap['peak_open']} | "
          f"{cap['chunks_received']}/{cap['chunks_expected']} | {cap['lost']} | {cap['out_of_order'] + cap['duplicates']} | "
          f"{cap['secs']:.1f} | {fmt(gw_rss / 1024 if gw_rss else None, 1)} MB | {fmt(cap['gateway_vmhwm_kb'] / 1024, 1)} MB |")
        if cap.get("first_error"):
            p(f"\nfirst error: `{cap['first_error'][:300]}`")
        p("")
    p("### Gateway memory (VmRSS)")
    p("")
    p("| when | MB |")
    p("|---|---|")
    p(f"| idle, just started | {fmt(res.get('rss_idle_startup_kb', 0) / 1024, 1)} |")
    if res.get("rss_under_load_kb"):
        p(f"| under load (c=64, median of samples) | {spread([x / 1024 for x in res['rss_under_load_kb']], 1)} |")
    if res.get("rss_idle_after_load_kb"):
        p(f"| idle after the load stages | {fmt(res['rss_idle_after_load_kb'] / 1024, 1)} |")
    if res.get("rss_idle_after_streams_kb"):
        p(f"| idle after the streams stage | {fmt(res['rss_idle_after_streams_kb'] / 1024, 1)} |")
    if res.get("gateway_vmhwm_final_kb"):
        p(f"| peak (VmHWM) over the whole run | {fmt(res['gateway_vmhwm_final_kb'] / 1024, 1)} |")
    if "burst" in st:
        b = st["burst"]
        p("")
        p(f"### Memory after a burst (a fresh gateway, {b['streams']} concurrent paced streams opened at 2,000/s; bench/burst_memory.py)")
        p("")
        p("| warm (before) | peak (VmHWM) | 1 s after | 10 s after | " + f"{b['settle_s']} s after | over warm at {b['settle_s']} s |")
        p("|---|---|---|---|---|---|")
        last = b.get(f"rss_{b['settle_s']}s_kb")
        p(f"| {fmt(b['rss_warm_kb'] / 1024, 1)} MB | {fmt(b['vmhwm_kb'] / 1024, 1)} MB | {fmt(b['rss_1s_kb'] / 1024, 1)} MB | "
          f"{fmt(b['rss_10s_kb'] / 1024, 1) + ' MB' if 'rss_10s_kb' in b else '—'} | {fmt(last / 1024, 1)} MB | +{fmt((last - b['rss_warm_kb']) / 1024, 1)} MB |")
    p("")
    fo = st.get("failover")
    if fo:
        b = fo["baseline"]
        p("### Failover (Anthropic dialect, primary misbehaves, fallback answers at once), µs")
        p("")
        def pick(d, k):
            return d[k] if k in d else d[str(k).lower()]
        p(f"Fallback straight from the client: non-streaming TTFB p50 {fmt(pick(b, False)['ttft_us']['p50'])}, "
          f"streaming time-to-first-content p50 {fmt(pick(b, True)['ttft_us']['p50'])}. "
          "Through the gateway with the primary healthy (the hop alone): ")
        if fo.get("gateway_healthy"):
            g = fo["gateway_healthy"]
            L[-1] += (f"non-streaming {fmt(pick(g, False)['ttft_us']['p50'])}, "
                      f"streaming {fmt(pick(g, True)['ttft_us']['p50'])}.")
        p("")
        p("| failure mode | gateway TTFB p50 (min–max) | minus fallback direct = failover time | minus gateway healthy | attempts (x-switchyard-attempts) | requests the primary mock saw, per request | answered by |")
        p("|---|---|---|---|---|---|---|")
        for name, r in fo["modes"].items():
            g = r["gateway"]
            if "last_content_to_error_p50_us" in r:
                v = r["last_content_to_error_p50_us"]
                clock, label = r.get("clock_us", 1e6), r.get("clock", "stall_timeout")
                p(f"| {name} | error event {fmt(v)} after the last chunk (min {fmt(g['last_content_to_error_us'].get('min'))}, max {fmt(g['last_content_to_error_us'].get('max'))}) | "
                  f"{fmt(v - clock if v is not None else None)} past {label}; no failover after content (by design) | | — | — | primary, then error event |")
                continue
            t = g["ttft_us"]
            saw = r.get("primary_saw_per_request")
            p(f"| {name} | {fmt(t.get('p50'))} ({fmt(t.get('min'))}–{fmt(t.get('max'))}) | {fmt(r['added_p50_us'])} | "
              f"{fmt(r.get('beyond_healthy_p50_us'))} | {', '.join(r['attempts'])} | {fmt(saw, 1) if saw is not None else '—'} | {', '.join(r['backends'])} |")
        cd = fo.get("cooldown")
        if cd:
            h, c = cd["healthy"]["ttft_us"], cd["cooling"]["ttft_us"]
            p(f"| request while the primary cools down (vs {fmt(h.get('p50'))} with the primary healthy) | "
              f"{fmt(c.get('p50'))} ({fmt(c.get('min'))}–{fmt(c.get('max'))}) | | {fmt(cd['added_p50_us'])} more than healthy | "
              f"{', '.join(cd['attempts'])} | — | {', '.join(cd['backends'])} |")
        else:
            p("| request while the primary cools down | not yet measurable (health registry pending, issue 4) | | | | | |")
        p("")
    if res.get("litellm_error"):
        p(f"LiteLLM: {res['litellm_error'][:500]}")
        p("")
    peer_text = peers.report(res)
    if peer_text:
        p(peer_text)
    if res["failures"]:
        p("### FAILED CHECKS")
        for f in res["failures"]:
            p(f"- {f}")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--client", required=True)
    ap.add_argument("--oha", default="oha")
    ap.add_argument("--tool", choices=["oha", "benchclient"], default="oha")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--secs", type=float, default=2.0, help="seconds per latency cell")
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--cpu-requests", type=int, default=30000)
    ap.add_argument("--paced-streams", type=int, default=16)
    ap.add_argument("--capacity", type=int, default=10000)
    ap.add_argument("--capacity-interval-ms", type=int, default=20)
    ap.add_argument("--open-rate", type=float, default=2000)
    ap.add_argument("--failover-requests", type=int, default=20)
    ap.add_argument("--nginx", action="store_true")
    ap.add_argument("--litellm", action="store_true")
    ap.add_argument("--litellm-venv", default="")
    ap.add_argument("--translate-cpu-requests", type=int, default=5000,
                    help="non-streaming requests per pair for the translate stage's CPU figure")
    ap.add_argument("--translate-streams", type=int, default=16, help="streams per pair (translate stage)")
    ap.add_argument("--translate-chunks", type=int, default=500, help="events per stream (translate stage)")
    ap.add_argument("--session-from", default=None,
                    help="the gateway's health.session_from list, e.g. 'switchyard' (no session derived "
                         "from the body: isolates that cost in the agents stage)")
    ap.add_argument("--agents-secs", type=float, default=1.0, help="seconds per agents cell")
    ap.add_argument("--peers", action="store_true", help="also TensorZero and Portkey (bench/peers.py)")
    ap.add_argument("--tensorzero-venv", default="")
    ap.add_argument("--portkey-dir", default="")
    ap.add_argument("--peers-stall-cap", type=float, default=0,
                    help="seconds a failover probe may wait (default 60, quick 7)")
    ap.add_argument("--burst-streams", type=int, default=2000, help="streams in the burst stage")
    ap.add_argument("--stages", default="latency,rate,cpu,streams,burst,translate,agents,failover")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rig = Rig(args)
    t0 = time.time()
    try:
        res = rig.run()
    except RigError as e:
        log(f"rig error: {e}")
        sys.exit(1)
    res["wall_seconds"] = time.time() - t0
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1, default=str))
    text = report(json.loads(json.dumps(res, default=str)), args.quick)
    print(text)
    md = Path(args.out).with_suffix(".md")
    md.write_text(text + "\n")
    log(f"raw numbers: {args.out}; table: {md}; {res['wall_seconds']:.0f} s")
    shutil.rmtree(rig.work, ignore_errors=True)
    if res["failures"]:
        log(f"{len(res['failures'])} check(s) failed")
        sys.exit(1)
    if args.quick:
        log("smoke run passed: every stage ran and answered correctly "
            "(the figures above are informational: nothing is measured on a smoke run)")


if __name__ == "__main__":
    main()
