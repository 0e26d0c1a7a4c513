"""docker-compose.yml and the worker files: parsed and cross-checked (no Docker engine needed)."""

import re
from pathlib import Path

import yaml
from fireworks import FWorker

ROOT = Path(__file__).resolve().parents[1]


def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_services_volumes_and_auth():
    doc = compose()
    services = doc["services"]
    assert {"mongo", "gpu-worker", "cpu-worker"} <= set(services)
    mongo = services["mongo"]
    assert mongo["image"].startswith("mongo:7")
    assert "mongo-data:/data/db" in mongo["volumes"] and "mongo-data" in doc["volumes"]
    for var in ("MONGO_INITDB_ROOT_USERNAME", "MONGO_INITDB_ROOT_PASSWORD"):
        # credentials come from the environment (.env), never written into the file
        assert re.fullmatch(r"\$\{MONGO_ROOT_\w+:\?[^}]+\}", mongo["environment"][var])
    assert all(p.startswith("127.0.0.1:") for p in mongo.get("ports", []))
    for name in ("gpu-worker", "cpu-worker"):
        worker = services[name]
        uri = worker["environment"]["FIREGEN_MONGO_URI"]
        assert "${MONGO_ROOT_PASSWORD" in uri and "@mongo:27017/" in uri
        assert worker["depends_on"]["mongo"]["condition"] == "service_healthy"
        assert "/run/firegen" in worker["tmpfs"]  # the launchpad file with credentials stays in memory
        assert worker["command"][-1] == name.split("-")[0]
    gpu = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert "deploy" not in services["cpu-worker"]


def test_every_file_a_service_references_exists():
    for name, service in compose()["services"].items():
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source}"
        command = service.get("command") or []
        for arg in command:
            if arg.startswith("/app/"):
                assert (ROOT / arg.removeprefix("/app/")).is_file(), f"{name}: {arg}"
    script = (ROOT / "launchers" / "docker_worker.sh").read_text()
    assert "${kind}_worker.yaml" in script
    dockerfile = (ROOT / "Dockerfile").read_text()
    for copied in re.findall(r"^COPY (\S+)", dockerfile, flags=re.M):
        assert (ROOT / copied).exists(), copied


def test_worker_files_are_fworkers_with_categories():
    for category in ("gpu", "cpu"):
        worker = FWorker.from_file(str(ROOT / "launchers" / f"{category}_worker.yaml"))
        assert worker.category == category
        assert worker.query == {"spec._category": category} or worker.query.get("spec._category") == category
