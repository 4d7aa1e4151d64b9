"""The deployment files read as an operator's tools would read them, and checked against each
other: the Dockerfile's user, probe, paths and port; compose's replicas, Redis and load
balancer; the Kubernetes objects' probes, security and grace period against the config's
shutdown budget; the systemd unit's hardening."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from support import DEPLOY, REPO_ROOT, load_yaml, load_yaml_docs, shutdown_budget_s, switchyard_bin

DEFAULT_CONFIG = "/etc/switchyard/switchyard.yaml"


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined."""
    text = (REPO_ROOT / "Dockerfile").read_text()
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    stages: list[list[tuple[str, str]]] = [[]]
    for entry in logical:
        word, _, rest = entry.strip().partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        stages[-1].append((word.upper(), rest.strip()))
    return stages


def listen_port(config: dict) -> int:
    return int(str(config["listen"]).rsplit(":", 1)[1])


def env_names(config: dict) -> set[str]:
    """Every environment variable a config reads."""
    names = set()
    for backend in config["backends"].values():
        key = backend.get("api_key_env")
        names.update([key] if isinstance(key, str) else key or [])
    names.update((config.get("auth") or {}).get("keys_env") or [])
    admin_key = (config.get("admin") or {}).get("key_env")
    if admin_key:
        names.add(admin_key)
    return names


def test_dockerfile_builds_a_small_non_root_image_with_a_probe():
    preamble, *stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: a build stage and a runtime stage"
    build, final = stages[0], stages[-1]
    build_name = build[0][1].split()[-1]
    assert "cargo build --release --locked" in " ".join(a for i, a in build if i == "RUN")

    instructions = {i for i, _ in final}
    # The runtime base has no shell: nothing may RUN there, every command is exec form.
    assert "RUN" not in instructions, "the runtime stage must not need a shell"
    user = [a for i, a in final if i == "USER"]
    assert user, "the runtime stage sets USER"
    uid = user[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER must be a numeric non-root uid, not {uid}"

    copies = [a for i, a in final if i == "COPY"]
    binary = [c for c in copies if c.startswith(f"--from={build_name} ")]
    assert binary and "/usr/local/bin/" in binary[0] and "/out/switchyard " in binary[0]
    config_copy = [c for c in copies if c.endswith(f" {DEFAULT_CONFIG}")]
    assert config_copy, f"a default config at {DEFAULT_CONFIG}"
    source = REPO_ROOT / config_copy[0].split()[0]
    assert source.is_file(), source
    config = load_yaml(source)

    exposed = [a for i, a in final if i == "EXPOSE"]
    assert exposed == [str(listen_port(config))], "EXPOSE the default config's port"

    health = [a for i, a in final if i == "HEALTHCHECK"]
    assert health, "a HEALTHCHECK"
    cmd = health[0].split(" CMD ", 1)[1]
    probe = json.loads(cmd)  # exec form: JSON, no shell
    assert probe[0] == "/usr/local/bin/switchyard-healthcheck"
    assert probe[1] == f"http://127.0.0.1:{listen_port(config)}/healthz"
    assert "examples/healthcheck.rs" in " ".join(a for i, a in build if i == "RUN")

    entry = [json.loads(a) for i, a in final if i == "ENTRYPOINT"]
    cmd = [json.loads(a) for i, a in final if i == "CMD"]
    assert entry == [["/usr/local/bin/switchyard"]]
    assert cmd == [["serve", "--config", DEFAULT_CONFIG]]
    # Kept in sync with the CLI: these flags exist.
    help_text = subprocess.run(
        [str(switchyard_bin()), "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--config" in help_text

    ignored = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in ("target", ".git", ".venv"):
        assert needed in ignored, f".dockerignore leaves out {needed}"
    for used in ("src", "examples", "deploy", "tests", "benches", "Cargo.toml", "Cargo.lock"):
        assert not any(used == p or used.startswith(p.rstrip("/") + "/") for p in ignored), used


def test_compose_runs_two_replicas_behind_a_balancer_sharing_redis():
    compose = load_yaml(DEPLOY / "compose.yaml")
    services = compose["services"]
    gateway = services["gateway"]
    assert gateway["deploy"]["replicas"] >= 2
    assert gateway["read_only"] is True
    assert gateway["cap_drop"] == ["ALL"]
    assert Path(DEPLOY / gateway["build"]["context"], gateway["build"]["dockerfile"]).is_file()

    mounts = [m.split(":") for m in gateway["volumes"]]
    config_mount = [m for m in mounts if m[1] == DEFAULT_CONFIG]
    assert config_mount and config_mount[0][2] == "ro", "the config is mounted read-only"
    config = load_yaml(DEPLOY / config_mount[0][0])
    assert config["health"]["store"] == "redis"
    redis_host = re.match(r"rediss?://([^:/]+)", config["health"]["redis"]["url"]).group(1)
    assert redis_host in services, f"the config's Redis {redis_host} is a compose service"
    assert "redis" in services[redis_host]["image"]
    assert gateway["depends_on"][redis_host]["condition"] == "service_healthy"

    # Keys come from the environment, each one the config reads, none written here.
    environment = gateway["environment"]
    assert set(environment) == env_names(config)
    for name, value in environment.items():
        assert value.startswith(f"${{{name}:?"), f"{name} is passed through, required"

    grace = gateway["stop_grace_period"]
    assert float(grace.rstrip("s")) > shutdown_budget_s(config)

    balancers = [s for s in services.values() if "nginx" in s.get("image", "")]
    assert len(balancers) == 1, "one nginx in front"
    lb = balancers[0]
    conf = [m.split(":") for m in lb["volumes"] if m.split(":")[1] == "/etc/nginx/nginx.conf"]
    nginx_conf = (DEPLOY / conf[0][0]).read_text()
    assert re.search(r"server gateway:%d;" % listen_port(config), nginx_conf)
    assert "proxy_buffering off;" in nginx_conf, "streams pass through unbuffered"
    assert any(p.endswith(":8080") for p in lb["ports"])
    assert "ports" not in gateway, "only the balancer is published"


def kubernetes_objects() -> dict[tuple[str, str], dict]:
    kustomization = load_yaml(DEPLOY / "kubernetes" / "kustomization.yaml")
    objects = {}
    for name in kustomization["resources"]:
        for doc in load_yaml_docs(DEPLOY / "kubernetes" / name):
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def test_kubernetes_example_is_consistent():
    objects = kubernetes_objects()
    deployment = objects[("Deployment", "switchyard")]
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    (container,) = pod["containers"]

    # The config the pods read, from the ConfigMap mounted at the default path.
    (mount,) = container["volumeMounts"]
    assert mount["mountPath"] == str(Path(DEFAULT_CONFIG).parent) and mount["readOnly"]
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    configmap = objects[("ConfigMap", volume["configMap"]["name"])]
    config = yaml.safe_load(configmap["data"][Path(DEFAULT_CONFIG).name])
    assert container["args"][:3] == ["serve", "--config", DEFAULT_CONFIG]

    port = next(p for p in container["ports"] if p["name"] == "http")
    assert port["containerPort"] == listen_port(config)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]

    # Killed only after the drain: delay + grace, with room to spare.
    assert pod["terminationGracePeriodSeconds"] > shutdown_budget_s(config)

    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0

    # Keys only from a Secret; the ConfigMap names variables, never values.
    (source,) = container["envFrom"]
    assert "secretRef" in source
    assert not container.get("env"), "no key in the manifest itself"
    readme = (REPO_ROOT / "README.md").read_text()
    for name in env_names(config):
        assert f"--from-literal={name}=" in readme, f"the README's secret command sets {name}"

    service = objects[("Service", "switchyard")]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in ("http", port["containerPort"])

    pdb = objects[("PodDisruptionBudget", "switchyard")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert 0 < pdb["spec"]["minAvailable"] < spec["replicas"]

    redis_host = re.match(r"rediss?://([^:/]+)", config["health"]["redis"]["url"]).group(1)
    assert ("Service", redis_host) in objects, "the config's Redis is a Service of the example"


def systemd_unit() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in (DEPLOY / "switchyard.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_systemd_unit_is_hardened_and_reloads_with_sighup(tmp_path):
    unit = systemd_unit()
    assert unit["ExecStart"][0].startswith(f"/usr/local/bin/switchyard serve --config {DEFAULT_CONFIG}")
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["Restart"] == ["on-failure"]
    for key, want in {
        "DynamicUser": "yes",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ReadOnlyPaths": str(Path(DEFAULT_CONFIG).parent),
    }.items():
        assert unit.get(key) == [want], f"{key}={want}"
    stop = unit["TimeoutStopSec"][0]
    assert float(stop.rstrip("s")) > shutdown_budget_s({}), "stop timeout > delay + grace"

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed: the unit's syntax was not verified")
    # verify wants ExecStart's binary to exist: point it at the one under test.
    text = (DEPLOY / "switchyard.service").read_text()
    (tmp_path / "switchyard.service").write_text(
        text.replace("/usr/local/bin/switchyard", str(switchyard_bin()))
    )
    done = subprocess.run(
        [analyze, "verify", str(tmp_path / "switchyard.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    warnings = [l for l in (done.stdout + done.stderr).splitlines() if "switchyard.service" in l]
    assert done.returncode == 0 and not warnings, done.stdout + done.stderr
