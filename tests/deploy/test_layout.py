"""The image's layout run without a container engine: the binaries and the default config
where the Dockerfile puts them, in a root that is read-only for the runtime user, entered with
chroot as that user (uid 65532); and the compose deployment's parts (two replicas of its
config, Redis, its nginx.conf) run as plain processes on loopback."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from support import (
    DEFAULT_CONFIG,
    DEPLOY,
    KEYS,
    RUNTIME_UID,
    Proc,
    ask,
    build_base_rootfs,
    compile_healthcheck,
    free_port,
    http,
    is_ci,
    load_yaml,
    localize,
    metric_total,
    start_mock,
    stripped_switchyard,
    switchyard_bin,
    wait_http_200,
)


def missing(what: str):
    """Under CI a missing prerequisite fails (scripts/test installs it); locally it skips."""
    if is_ci():
        pytest.fail(f"{what} (scripts/test installs it under CI)")
    pytest.skip(what)


@pytest.fixture
def workdir():
    # Not pytest's tmp_path: its parents are 0700, which uid 65532 could not traverse.
    path = Path(tempfile.mkdtemp(prefix="switchyard-deploy-"))
    path.chmod(0o755)
    yield path
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o755)
    shutil.rmtree(path)


def uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))


def test_image_layout_serves_as_non_root_from_a_read_only_root(workdir):
    if os.geteuid() != 0:
        pytest.skip("needs root, to chroot into the layout and become uid 65532")
    chroot = shutil.which("chroot")
    assert chroot, "coreutils' chroot"
    logs = workdir / "logs"
    logs.mkdir()
    root = workdir / "root"
    bin_dir = root / "usr/local/bin"
    bin_dir.mkdir(parents=True)
    gateway = stripped_switchyard(bin_dir / "switchyard")
    probe = compile_healthcheck(bin_dir / "switchyard-healthcheck")
    build_base_rootfs(root, [gateway, probe])

    mock, mock_url = start_mock(logs)
    port = free_port()
    config = load_yaml(DEPLOY / "config/standalone.yaml")
    target = root / DEFAULT_CONFIG.lstrip("/")
    target.parent.mkdir(parents=True)
    target.write_text(localize(config, mock_url, f"127.0.0.1:{port}"))

    # Read-only for the runtime user: root's files, no write bit for others, not even /tmp
    # (Kubernetes' readOnlyRootFilesystem leaves no writable /tmp either).
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            p = os.path.join(dirpath, name)
            os.chmod(p, 0o555 if os.access(p, os.X_OK) else 0o444)
        os.chmod(dirpath, 0o555)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}

    as_runtime_user = [chroot, f"--userspec={RUNTIME_UID}:{RUNTIME_UID}", f"--groups={RUNTIME_UID}", str(root)]
    env = {**KEYS, "PATH": "/usr/local/bin"}
    proc = Proc(
        [*as_runtime_user, "/usr/local/bin/switchyard", "serve", "--config", DEFAULT_CONFIG],
        env,
        logs / "gateway.log",
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http_200(f"{url}/healthz", proc.p)
        assert uid_of(proc.p.pid) == RUNTIME_UID
        ask(url)

        # The image's HEALTHCHECK command, from inside the layout: 0 on the live gateway, 1
        # (with a reason) on a port nobody listens on.
        ok = subprocess.run(
            [*as_runtime_user, "/usr/local/bin/switchyard-healthcheck", f"{url}/healthz"],
            capture_output=True, text=True, env=env, timeout=10,
        )
        assert ok.returncode == 0, ok.stderr
        closed = subprocess.run(
            [*as_runtime_user, "/usr/local/bin/switchyard-healthcheck",
             f"http://127.0.0.1:{free_port()}/healthz"],
            capture_output=True, text=True, env=env, timeout=10,
        )
        assert closed.returncode == 1 and "connect" in closed.stderr, closed.stderr
        not_ok = subprocess.run(
            [*as_runtime_user, "/usr/local/bin/switchyard-healthcheck", f"{url}/no-such-page"],
            capture_output=True, text=True, env=env, timeout=10,
        )
        assert not_ok.returncode == 1 and "404" in not_ok.stderr, not_ok.stderr

        assert proc.p.poll() is None, proc.output()
        after = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
        assert after == before, "the gateway wrote into its root"
    except BaseException:
        print(proc.output())
        raise
    finally:
        proc.stop()
        mock.stop()


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None
    )


def test_compose_parts_two_replicas_share_redis_behind_its_nginx(workdir):
    nginx = nginx_binary()
    redis_server = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )
    if nginx is None or redis_server is None:
        missing("nginx and redis-server are needed for the compose deployment's parts")
    procs: list[Proc] = []
    try:
        mock, mock_url = start_mock(workdir)
        procs.append(mock)
        redis_port = free_port()
        procs.append(Proc(
            [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            dict(os.environ), workdir / "redis.log",
        ))
        config = load_yaml(DEPLOY / "config/replicas.yaml")
        replicas = []
        for i in range(2):
            port = free_port()
            path = workdir / f"replica{i}.yaml"
            path.write_text(localize(
                config, mock_url, f"127.0.0.1:{port}", f"redis://127.0.0.1:{redis_port}"
            ))
            procs.append(Proc(
                [str(switchyard_bin()), "serve", "--config", str(path)],
                {**os.environ, **KEYS}, workdir / f"replica{i}.log",
            ))
            replicas.append(f"http://127.0.0.1:{port}")
            wait_http_200(f"{replicas[-1]}/healthz", procs[-1].p)

        # deploy/nginx.conf with the compose service name resolved to the two replicas.
        lb_port = free_port()
        conf = (DEPLOY / "nginx.conf").read_text()
        servers = "".join(f"server {u.removeprefix('http://')};\n    " for u in replicas)
        assert "server gateway:8080;" in conf and "listen 8080;" in conf
        conf = conf.replace("server gateway:8080;", servers.rstrip()).replace(
            "listen 8080;", f"listen 127.0.0.1:{lb_port};"
        )
        (workdir / "nginx.conf").write_text(conf)
        (workdir / "logs").mkdir()
        procs.append(Proc(
            [nginx, "-p", str(workdir), "-c", str(workdir / "nginx.conf"),
             "-g", f"daemon off; pid {workdir}/nginx.pid; error_log {workdir}/nginx-error.log;"],
            dict(os.environ), workdir / "nginx.log",
        ))
        lb = f"http://127.0.0.1:{lb_port}"
        wait_http_200(f"{lb}/healthz", procs[-1].p)

        for _ in range(4):
            ask(lb)
        for replica in replicas:
            _, _, raw = http("GET", f"{replica}/metrics")
            text = raw.decode()
            assert metric_total(text, "switchyard_requests_total") > 0, f"{replica} got no request"

        # Each replica uses the shared store: it polls the shared cooldowns every
        # poll_interval, so its Redis command counter moves.
        deadline = time.monotonic() + 10
        for replica in replicas:
            while True:
                _, _, raw = http("GET", f"{replica}/metrics")
                if metric_total(raw.decode(), "switchyard_redis_commands_total") > 0:
                    break
                assert time.monotonic() < deadline, f"{replica} sent Redis nothing"
                time.sleep(0.2)
    except BaseException:
        for p in procs:
            print(f"--- {p.log}\n{p.output()}")
        raise
    finally:
        for p in reversed(procs):
            p.stop()


def kubernetes_config() -> dict:
    configmap = load_yaml(DEPLOY / "kubernetes/configmap.yaml")
    return yaml.safe_load(configmap["data"]["switchyard.yaml"])


@pytest.mark.parametrize(
    "name,config",
    [
        ("image default", lambda: load_yaml(DEPLOY / "config/standalone.yaml")),
        ("compose replicas", lambda: load_yaml(DEPLOY / "config/replicas.yaml")),
        ("kubernetes configmap", kubernetes_config),
    ],
)
def test_every_shipped_config_is_accepted_and_serves(workdir, name, config):
    """Each config as shipped (only addresses changed): its keys are all known to the
    gateway and its environment is the one the deployment passes. Redis, where the config
    uses it, is a port nobody listens on: the gateway serves on local state."""
    mock, mock_url = start_mock(workdir)
    port = free_port()
    path = workdir / "switchyard.yaml"
    path.write_text(
        localize(config(), mock_url, f"127.0.0.1:{port}", f"redis://127.0.0.1:{free_port()}")
    )
    gateway = Proc(
        [str(switchyard_bin()), "serve", "--config", str(path)],
        {**os.environ, **KEYS},
        workdir / "gateway.log",
    )
    try:
        wait_http_200(f"http://127.0.0.1:{port}/healthz", gateway.p)
        ask(f"http://127.0.0.1:{port}")
    except BaseException:
        print(gateway.output())
        raise
    finally:
        gateway.stop()
        mock.stop()
