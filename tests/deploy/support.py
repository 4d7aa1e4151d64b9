"""Helpers for the deployment tests: the deploy/ files, the gateway binary, free ports and a
tiny HTTP client. Every process is started by a test and ended by it."""

from __future__ import annotations

import json
import shutil
import signal
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"

# The values the deploy configs read from the environment; none is a real key.
KEYS = {
    "ANTHROPIC_API_KEY": "sk-ant-deploy-test",
    "OPENROUTER_API_KEY": "sk-or-deploy-test",
    "SWITCHYARD_KEY": "sy-client-deploy-test",
    "SWITCHYARD_ADMIN_KEY": "sy-admin-deploy-test",
}

# shutdown.delay and shutdown.grace when a config does not set them (README "Signals,
# readiness and reload").
SHUTDOWN_DEFAULTS_S = {"delay": 5.0, "grace": 30.0}


def is_ci() -> bool:
    return os.environ.get("CI", "") in ("true", "1")


def switchyard_bin() -> Path:
    raw = os.environ.get("SWITCHYARD_BIN") or "target/debug/switchyard"
    path = Path(raw)
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"no switchyard binary at {path} (cargo build, or set SWITCHYARD_BIN)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(
    method: str, url: str, body: Any = None, headers: dict | None = None, timeout: float = 10
) -> tuple[int, dict, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        req.add_header("content-type", "application/json")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def wait_http_200(url: str, proc: subprocess.Popen | None = None, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process behind {url} exited ({proc.returncode}) before answering")
        try:
            status, _, body = http("GET", url, timeout=2)
            if status == 200:
                return
            last = (status, body[:200])
        except OSError as e:
            last = e
        time.sleep(0.1)
    pytest.fail(f"GET {url} never answered 200 within {timeout:.0f}s (last: {last!r})")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def duration_s(value: Any) -> float:
    """A config duration (`250ms`, `8s`, `5m`, or seconds) in seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * scale
    raise ValueError(f"not a duration: {value!r}")


def shutdown_budget_s(config: dict) -> float:
    """shutdown.delay + shutdown.grace of a config, the defaults where it sets none."""
    shutdown = config.get("shutdown") or {}
    return sum(
        duration_s(shutdown[k]) if k in shutdown else default
        for k, default in SHUTDOWN_DEFAULTS_S.items()
    )


def localize(config: dict, mock_url: str, listen: str, redis_url: str | None = None) -> str:
    """A deploy config pointed at a local mock (and Redis), everything else as shipped."""
    config = json.loads(json.dumps(config))  # a deep copy
    config["listen"] = listen
    for backend in config["backends"].values():
        if backend["api"] == "anthropic_messages":
            backend["base_url"] = mock_url
        else:
            backend["base_url"] = mock_url + "/v1"
    redis = (config.get("health") or {}).get("redis")
    if redis is not None:
        assert redis_url is not None, "this config needs a Redis"
        redis["url"] = redis_url
    return yaml.safe_dump(config, sort_keys=False)


def ask(gateway: str, name: str = "primary") -> None:
    """One Anthropic-dialect request on route `main`, with and without the gateway key."""
    body = {"model": "main", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    status, _, raw = http("POST", f"{gateway}/v1/messages", body, {"anthropic-version": "2023-06-01"})
    assert status == 401, f"a request without the gateway key got {status}: {raw[:300]!r}"
    status, headers, raw = http(
        "POST",
        f"{gateway}/v1/messages",
        body,
        {"anthropic-version": "2023-06-01", "x-api-key": KEYS["SWITCHYARD_KEY"]},
    )
    assert status == 200, f"{status}: {raw[:500]!r}"
    assert headers.get("x-switchyard-backend") == "anthropic", headers
    text = json.loads(raw)["content"][0]["text"]
    assert text == f"Hello from {name}", text


# --- the image's layout, built from this machine's files -------------------------------------

# The runtime user of the Dockerfile (distroless's `nonroot`).
RUNTIME_UID = 65532
DEFAULT_CONFIG = "/etc/switchyard/switchyard.yaml"


def shared_libraries(binaries: list[Path]) -> list[Path]:
    """The shared objects (and the loader) the binaries link, as `ldd` resolves them here."""
    found: set[Path] = set()
    for binary in binaries:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True)
        for line in out.stdout.splitlines():
            for word in line.split():
                if word.startswith("/"):
                    found.add(Path(word))
    return sorted(found)


def build_base_rootfs(dest: Path, binaries: list[Path]) -> None:
    """What the Dockerfile's runtime base (distroless cc-debian12:nonroot) provides: glibc and
    libgcc, CA certificates, /etc/passwd with `nonroot`, /tmp; no shell, no package manager."""
    for lib in shared_libraries(binaries):
        target = dest / lib.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib.resolve(), target)
    certs = Path("/etc/ssl/certs/ca-certificates.crt")
    if certs.is_file():
        (dest / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
        shutil.copy2(certs, dest / "etc/ssl/certs/ca-certificates.crt")
    (dest / "etc").mkdir(exist_ok=True)
    (dest / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/sbin/nologin\n"
        f"nonroot:x:{RUNTIME_UID}:{RUNTIME_UID}:nonroot:/home/nonroot:/sbin/nologin\n"
    )
    (dest / "etc/group").write_text(f"root:x:0:\nnonroot:x:{RUNTIME_UID}:\n")
    (dest / "home/nonroot").mkdir(parents=True)
    (dest / "tmp").mkdir()
    (dest / "tmp").chmod(0o1777)


def compile_healthcheck(out: Path) -> Path:
    """examples/healthcheck.rs built as the Dockerfile builds it."""
    rustc = shutil.which("rustc")
    if rustc is None:
        pytest.fail("rustc not found (it builds the image's healthcheck probe)")
    subprocess.run(
        [rustc, "--edition", "2021", "-C", "opt-level=s", "-C", "strip=symbols",
         "-o", str(out), str(REPO_ROOT / "examples/healthcheck.rs")],
        check=True,
        timeout=120,
    )
    return out


def stripped_switchyard(out: Path) -> Path:
    """The binary under test without its debug info (as the Dockerfile strips it)."""
    strip = shutil.which("strip")
    if strip is None:
        shutil.copy2(switchyard_bin(), out)
    else:
        subprocess.run([strip, "--strip-debug", "-o", str(out), str(switchyard_bin())], check=True)
    return out


class Proc:
    """A child process with its output in a file; killed (whole group) by stop()."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, cwd: str = "/"):
        self.log = log
        self._out = open(log, "wb")
        self.p = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
            env=env, cwd=cwd, start_new_session=True,
        )

    def output(self) -> str:
        self._out.flush()
        return self.log.read_text("utf-8", "replace")[-4000:]

    def stop(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait(timeout=10)
        self._out.close()


def start_mock(log_dir: Path, name: str = "primary") -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(
        [str(switchyard_bin()), "mock", "--listen", f"127.0.0.1:{port}", "--name", name],
        dict(os.environ),
        log_dir / f"mock-{name}.log",
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, url
        except OSError:
            if proc.p.poll() is not None or time.monotonic() > deadline:
                out = proc.output()
                proc.stop()
                pytest.fail(f"the mock did not start:\n{out}")
            time.sleep(0.05)


def metric_total(metrics_text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics_text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )
