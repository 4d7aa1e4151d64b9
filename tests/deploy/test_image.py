"""The Dockerfile built and run by a real container engine (Podman), offline.

No registry is reachable, so the runtime base is made here: this machine's glibc, libgcc and
CA certificates with distroless's users (support.build_base_rootfs), imported as an image and
passed as RUNTIME_IMAGE. The build stage is replaced by the binaries under test
(`--build-context build=DIR`: compiling the gateway again inside a Rust image would take many
minutes); every instruction of the runtime stage runs as written. Then `switchyard mock` and
the gateway run from the image in one pod, the gateway read-only with no capabilities, and
answer /healthz, a request, and the image's HEALTHCHECK.

The build stage itself (`cargo build --release --locked`, minutes) runs in the opt-in
test_full_dockerfile_build_with_this_machines_toolchain.

When the engine cannot run containers here the test skips and says why, except under CI on a
machine where it ran before (a stamp in /var/tmp), where that is a regression and fails.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from pathlib import Path

import pytest

from support import (
    DEFAULT_CONFIG,
    DEPLOY,
    KEYS,
    REPO_ROOT,
    RUNTIME_UID,
    ask,
    build_base_rootfs,
    compile_healthcheck,
    free_port,
    is_ci,
    load_yaml,
    localize,
    stripped_switchyard,
    wait_http_200,
)

STAMP = Path("/var/tmp/switchyard-container-engine.ok")


class Engine:
    def __init__(self, podman: str, conf: Path):
        self.podman = podman
        # KEYS: `-e NAME` passes each from the engine's environment, as compose does.
        self.env = {**os.environ, **KEYS, "CONTAINERS_CONF": str(conf)}

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [self.podman, *args], capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and done.returncode != 0:
            raise EngineError(f"podman {' '.join(args)}: exit {done.returncode}\n{done.stderr.strip()}")
        return done


class EngineError(Exception):
    pass


def engine_unavailable(why: str):
    if is_ci() and STAMP.exists():
        pytest.fail(f"the container engine ran on this machine before ({STAMP}) but not now: {why}")
    pytest.skip(f"container engine unavailable, image not tested: {why}")


def containers_conf(path: Path) -> Path:
    # runc: Debian's crun refuses this machine's hybrid cgroup v1/v2 mounts. Limits no higher
    # than ours: without CAP_SYS_RESOURCE the runtime may not raise them to podman's defaults.
    lines = ["[containers]"]
    limits = []
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        hard = resource.getrlimit(which)[1]
        value = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
        limits.append(f'"{name}={value}:{value}"')
    lines.append(f"default_ulimits = [{', '.join(limits)}]")
    if shutil.which("runc"):
        lines += ["[engine]", 'runtime = "runc"']
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def workdir():
    path = Path(tempfile.mkdtemp(prefix="switchyard-image-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Prepared:
    """A working engine, the offline runtime base, and the binaries under test."""

    def __init__(self, engine: Engine, base: str, build_dir: Path, tag: str):
        self.engine, self.base, self.build_dir, self.tag = engine, base, build_dir, tag


@pytest.fixture
def prepared(workdir):
    podman = shutil.which("podman")
    if podman is None:
        engine_unavailable("podman is not installed (scripts/test installs Debian's podman and runc)")
    if os.geteuid() != 0:
        engine_unavailable("rootless podman is not set up here; run as root")
    engine = Engine(podman, containers_conf(workdir / "containers.conf"))
    tag = uuid.uuid4().hex[:10]
    base = f"localhost/switchyard-test-base:{tag}"

    out = workdir / "build" / "out"
    out.mkdir(parents=True)
    gateway = stripped_switchyard(out / "switchyard")
    probe = compile_healthcheck(out / "switchyard-healthcheck")
    rootfs = workdir / "rootfs"
    build_base_rootfs(rootfs, [gateway, probe])
    with tarfile.open(workdir / "base.tar", "w") as tar:
        tar.add(rootfs, arcname=".")

    # Can this engine run a container at all? (namespaces, cgroups, storage, limits)
    try:
        engine.run("import", str(workdir / "base.tar"), base)
        loader = next(p for p in rootfs.rglob("ld-linux*") if p.is_file())
        engine.run("run", "--rm", "--network", "none", base, "/" + str(loader.relative_to(rootfs)), "--version")
    except (EngineError, subprocess.TimeoutExpired) as e:
        engine.run("rmi", "-f", base, check=False)
        engine_unavailable(str(e))
    STAMP.write_text("podman ran a container here\n")
    yield Prepared(engine, base, workdir / "build", tag)
    engine.run("rmi", "-f", base, check=False)


def check_image(engine: Engine, image: str, workdir: Path, pod: str) -> None:
    """The image's metadata, then `switchyard mock` and the gateway from it in one pod."""
    (info,) = json.loads(engine.run("image", "inspect", image).stdout)
    conf = info["Config"]
    assert conf["User"] == f"{RUNTIME_UID}:{RUNTIME_UID}"
    assert conf["Entrypoint"] == ["/usr/local/bin/switchyard"]
    assert conf["Cmd"] == ["serve", "--config", DEFAULT_CONFIG]
    assert "8080/tcp" in conf["ExposedPorts"]
    assert f"SWITCHYARD_CONFIG={DEFAULT_CONFIG}" in conf["Env"]
    assert info["Healthcheck"]["Test"][0] == "CMD", info["Healthcheck"]
    try:
        port = free_port()
        engine.run("pod", "create", "--name", pod, "-p", f"127.0.0.1:{port}:8080")
        hardened = ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
        engine.run("run", "-d", "--pod", pod, "--name", f"{pod}-mock", *hardened, image,
                   "mock", "--listen", "127.0.0.1:8081", "--name", "primary")
        config = workdir / "switchyard.yaml"
        config.write_text(localize(
            load_yaml(DEPLOY / "config/standalone.yaml"), "http://127.0.0.1:8081", "0.0.0.0:8080"
        ))
        config.chmod(0o444)
        env = [a for k in KEYS for a in ("-e", k)]
        engine.run("run", "-d", "--pod", pod, "--name", f"{pod}-gw", *hardened, *env,
                   "-v", f"{config}:{DEFAULT_CONFIG}:ro", image)  # the image's own CMD

        url = f"http://127.0.0.1:{port}"
        wait_http_200(f"{url}/healthz", timeout=30)
        ask(url)
        # Run once by hand: without systemd podman schedules no periodic checks.
        health = engine.run("healthcheck", "run", f"{pod}-gw", check=False)
        assert health.returncode == 0, f"HEALTHCHECK: {health.stdout}{health.stderr}"
        pid = engine.run("inspect", "--format", "{{.State.Pid}}", f"{pod}-gw").stdout.strip()
        status = Path(f"/proc/{pid}/status").read_text()
        assert f"Uid:\t{RUNTIME_UID}\t" in status, status
    except BaseException:
        for name in (f"{pod}-gw", f"{pod}-mock"):
            logs = engine.run("logs", name, check=False)
            print(f"--- {name}\n{logs.stdout}{logs.stderr}")
        raise
    finally:
        engine.run("pod", "rm", "-f", "-t", "0", pod, check=False)


def test_image_builds_offline_and_serves(workdir, prepared):
    engine, tag = prepared.engine, prepared.tag
    image = f"localhost/switchyard-test:{tag}"
    assert "AS build\n" in (REPO_ROOT / "Dockerfile").read_text(), "the build stage's name"
    try:
        engine.run(
            "build", "--format", "docker", "--pull=never",
            "--build-context", f"build={prepared.build_dir}",
            "--build-arg", f"RUNTIME_IMAGE={prepared.base}",
            "-f", str(REPO_ROOT / "Dockerfile"), "-t", image, str(REPO_ROOT),
            timeout=300,
        )
        check_image(engine, image, workdir, f"switchyard-test-{tag}")
    finally:
        engine.run("rmi", "-f", image, check=False)


FULL_BUILD = "SWITCHYARD_IMAGE_FULL_BUILD"


def test_full_dockerfile_build_with_this_machines_toolchain(workdir, prepared):
    """Opt-in (SWITCHYARD_IMAGE_FULL_BUILD=1; about 7 minutes on 2 cores): the build stage
    too, `cargo build --release --locked` and all, in a Rust image made of this machine's
    Debian /usr and rustup toolchain (bind-mounted as overlays, so nothing on the host is
    written), offline from the local cargo registry."""
    if os.environ.get(FULL_BUILD) != "1":
        pytest.skip(f"the full image build takes minutes; set {FULL_BUILD}=1 to run it")
    home = Path.home()
    rustup, cargo = home / ".rustup", home / ".cargo"
    if not (rustup.is_dir() and (cargo / "bin/cargo").exists() and Path("/bin").resolve() == Path("/usr/bin")):
        pytest.skip("needs a rustup toolchain in ~/.rustup and a merged-/usr Debian host")
    engine, tag = prepared.engine, prepared.tag
    rust_image, image = f"localhost/switchyard-test-rust:{tag}", f"localhost/switchyard-full:{tag}"
    root = workdir / "rust-root"
    for d in ("usr", "etc", "tmp", "src", str(home).lstrip("/")):
        (root / d).mkdir(parents=True, exist_ok=True)
    for link in ("bin", "lib", "lib64", "sbin"):
        (root / link).symlink_to(f"usr/{link}")
    (root / "etc/passwd").write_text(f"root:x:0:0:root:{home}:/bin/sh\n")
    with tarfile.open(workdir / "rust.tar", "w") as tar:
        tar.add(root, arcname=".")
    try:
        engine.run(
            "import",
            "--change", f"ENV PATH={cargo}/bin:/usr/local/bin:/usr/bin:/bin",
            "--change", f"ENV HOME={home}",
            "--change", "ENV CARGO_NET_OFFLINE=true",
            str(workdir / "rust.tar"), rust_image,
        )
        engine.run(
            # --layers=false: no build-stage image is left behind.
            "build", "--format", "docker", "--pull=never", "--layers=false",
            "--build-arg", f"RUST_IMAGE={rust_image}",
            "--build-arg", f"RUNTIME_IMAGE={prepared.base}",
            "-v", "/usr:/usr:O", "-v", "/etc/alternatives:/etc/alternatives:ro",
            "-v", f"{rustup}:{rustup}:ro", "-v", f"{cargo}:{cargo}:O",
            "-f", str(REPO_ROOT / "Dockerfile"), "-t", image, str(REPO_ROOT),
            timeout=1800,
        )
        check_image(engine, image, workdir, f"switchyard-full-{tag}")
    finally:
        engine.run("rmi", "-f", image, rust_image, check=False)
