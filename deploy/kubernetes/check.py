#!/usr/bin/env python3
"""Checks the Kubernetes manifests without a cluster.

    python3 deploy/kubernetes/check.py <directory holding the access-service and
                                        lock-gateway binaries>

Every document is validated (strictly: no unknown fields) against the Kubernetes API
schema of KUBERNETES_VERSION. Then what the schema cannot know: every variable a
container sets is one its binary reads (its `--help` lists them), every secret key it
reads is in secrets.example.yaml, every port a probe, Service, Ingress or policy names
is one a container opens, and the addresses the services are given match those ports.
"""

import pathlib
import re
import subprocess
import sys

import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.30.0"
HERE = pathlib.Path(__file__).resolve().parent
# Read by the tracing filter rather than by the command line.
ENVIRONMENT_ONLY = {"RUST_LOG"}

errors: list[str] = []


def fail(message: str) -> None:
    errors.append(message)


def load(name: str) -> list[dict]:
    with open(HERE / name, encoding="utf-8") as file:
        return [doc for doc in yaml.safe_load_all(file) if doc]


def documents() -> dict[str, list[dict]]:
    kustomization = load("kustomization.yaml")[0]
    files = list(kustomization["resources"]) + ["secrets.example.yaml"]
    return {name: load(name) for name in files}


def variables_read(binary: pathlib.Path, args: list[str]) -> set[str]:
    help_text = subprocess.run(
        [str(binary), *args, "--help"], check=True, capture_output=True, text=True
    ).stdout
    return set(re.findall(r"\[env: ([A-Z0-9_]+)[=\]]", help_text)) | ENVIRONMENT_ONLY


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def main() -> int:
    bins = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/debug")
    by_file = documents()
    docs = [doc for file_docs in by_file.values() for doc in file_docs]

    for name, file_docs in by_file.items():
        for doc in file_docs:
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as error:
                fail(f"{name}: {doc['kind']} {doc['metadata']['name']}: {error.message}")

    secrets = {
        doc["metadata"]["name"]: set(doc.get("stringData", {})) | set(doc.get("data", {}))
        for doc in docs
        if doc["kind"] == "Secret"
    }
    services = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "Service"}
    deployments = [doc for doc in docs if doc["kind"] == "Deployment"]
    # Named container ports of each app, for Services and policies that name them.
    app_ports: dict[str, dict[str, int]] = {}

    deadlines: dict[str, dict[str, int]] = {}
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        app = deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
        if deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] != app:
            fail(f"Deployment {app}: its selector does not select its pods")
        for container in pod.get("initContainers", []) + pod["containers"]:
            where = f"Deployment {app}, container {container['name']}"
            binary, *args = container["command"]
            if not (bins / binary).is_file():
                fail(f"{where}: runs {binary}, which is not in {bins}")
                continue
            known = variables_read(bins / binary, args)
            env = {}
            for variable in container.get("env", []):
                env[variable["name"]] = variable.get("value")
                if variable["name"] not in known:
                    fail(f"{where}: sets {variable['name']}, which {binary} {' '.join(args)} does not read")
                reference = variable.get("valueFrom", {}).get("secretKeyRef")
                if reference and reference["key"] not in secrets.get(reference["name"], set()):
                    fail(f"{where}: reads key {reference['key']} of secret {reference['name']}, which secrets.example.yaml does not have")
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            if container in pod["containers"]:
                app_ports.setdefault(app, {}).update(ports)
                if "GRPC_ADDR" not in env or port_of(env["GRPC_ADDR"]) != ports.get("grpc"):
                    fail(f"{where}: GRPC_ADDR does not listen on the grpc port {ports.get('grpc')}")
                if "CALLBACK_ADDR" in env and port_of(env["CALLBACK_ADDR"]) != ports.get("callbacks"):
                    fail(f"{where}: CALLBACK_ADDR does not listen on the callbacks port")
                for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
                    probe = container.get(probe_name)
                    if not probe:
                        continue
                    target = (probe.get("grpc") or probe.get("tcpSocket") or probe.get("httpGet"))["port"]
                    if target not in ports and target not in ports.values():
                        fail(f"{where}: {probe_name} probes port {target}, which is not opened")
                if "LOCK_GATEWAY_URL" in env:
                    match = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", env["LOCK_GATEWAY_URL"])
                    service = services.get(match.group(1)) if match else None
                    if not service or int(match.group(2)) not in [p["port"] for p in service["spec"]["ports"]]:
                        fail(f"{where}: LOCK_GATEWAY_URL {env['LOCK_GATEWAY_URL']} names no Service port")
        grace_ms = next(
            (int(v["value"]) for c in pod["containers"] for v in c.get("env", []) if v["name"] == "SHUTDOWN_GRACE_MS"),
            20_000,
        )
        pause_s = max(
            (int(c["lifecycle"]["preStop"]["exec"]["command"][1]) for c in pod["containers"] if "lifecycle" in c),
            default=0,
        )
        if pod.get("terminationGracePeriodSeconds", 30) * 1000 <= grace_ms + pause_s * 1000:
            fail(f"Deployment {app}: terminationGracePeriodSeconds leaves no room for SHUTDOWN_GRACE_MS and preStop")
        # Each wait must outlast the one it contains: TTLock's deadline inside
        # lock-gateway's call, that call inside access-service's drain.
        deadlines[app] = {
            "grace_ms": grace_ms,
            **{
                v["name"]: int(v["value"])
                for c in pod["containers"]
                for v in c.get("env", [])
                if v["name"] in ("LOCK_GATEWAY_TIMEOUT_MS", "TTLOCK_REMOTE_TIMEOUT_SECS")
            },
        }

    ttlock_ms = deadlines.get("lock-gateway", {}).get("TTLOCK_REMOTE_TIMEOUT_SECS", 0) * 1000
    gateway_ms = deadlines.get("access-service", {}).get("LOCK_GATEWAY_TIMEOUT_MS", 0)
    if not ttlock_ms or not gateway_ms:
        fail("the manifests must set TTLOCK_REMOTE_TIMEOUT_SECS and LOCK_GATEWAY_TIMEOUT_MS")
    elif gateway_ms <= ttlock_ms:
        fail("LOCK_GATEWAY_TIMEOUT_MS must outlast TTLOCK_REMOTE_TIMEOUT_SECS")
    elif deadlines["lock-gateway"]["grace_ms"] <= ttlock_ms:
        fail("lock-gateway's SHUTDOWN_GRACE_MS must outlast TTLOCK_REMOTE_TIMEOUT_SECS")
    elif deadlines["access-service"]["grace_ms"] <= gateway_ms:
        fail("access-service's SHUTDOWN_GRACE_MS must outlast LOCK_GATEWAY_TIMEOUT_MS")

    for service in services.values():
        app = service["spec"]["selector"]["app.kubernetes.io/name"]
        for port in service["spec"]["ports"]:
            if port["targetPort"] not in app_ports.get(app, {}):
                fail(f"Service {service['metadata']['name']}: targets port {port['targetPort']}, which {app} does not open")
    for ingress in (doc for doc in docs if doc["kind"] == "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service = services.get(backend["name"])
                names = [p.get("name") for p in service["spec"]["ports"]] if service else []
                if backend["port"].get("name") not in names:
                    fail(f"Ingress {ingress['metadata']['name']}: routes to {backend['name']}:{backend['port']}, which does not exist")
    for policy in (doc for doc in docs if doc["kind"] == "NetworkPolicy"):
        app = policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
        for rule in policy["spec"].get("ingress", []):
            for port in rule.get("ports", []):
                if port["port"] not in app_ports.get(app, {}):
                    fail(f"NetworkPolicy {policy['metadata']['name']}: admits port {port['port']}, which {app} does not open")

    for error in errors:
        print(f"deploy/kubernetes: {error}", file=sys.stderr)
    if not errors:
        print(f"deploy/kubernetes: {len(docs)} documents valid for Kubernetes {KUBERNETES_VERSION}, settings match the binaries")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
