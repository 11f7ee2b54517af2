"""Validates deploy/ without a cluster or a container engine (run by scripts/check-deploy).

- Kubernetes' own kinds against the API's schemas (kubernetes-validate, strict: unknown fields fail);
- KEDA's kinds against kubernetes/schema/keda.json (jsonschema);
- the Dockerfile's shape (dockerfile-parse): a build stage, then an empty final image that runs the
  static executable as a non-root user;
- that what the manifests ask of the worker exists: the environment variables in its --help, the probe
  paths it serves, and the port it is told to listen on.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from dockerfile_parse import DockerfileParser

HERE = Path(__file__).resolve().parent
failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL {message}")


def documents(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def check_manifests():
    keda = json.loads((HERE / "kubernetes/schema/keda.json").read_text())
    found = {}
    for path in sorted((HERE / "kubernetes").glob("*.yaml")):
        for doc in documents(path):
            kind = doc.get("kind")
            found.setdefault(kind, []).append(doc)
            where = f"{path.name}: {kind}/{doc.get('metadata', {}).get('name')}"
            if doc.get("apiVersion", "").startswith("keda.sh/"):
                schema = {k: v for k, v in keda.items() if k != "oneOf"} | {"$ref": f"#/$defs/{kind}"}
                try:
                    jsonschema.validate(doc, schema)
                    print(f"ok   {where} (KEDA schema)")
                except jsonschema.ValidationError as e:
                    fail(f"{where}: {e.message} at {'/'.join(map(str, e.absolute_path))}")
            else:
                try:
                    kubernetes_validate.validate(doc, "1.30.0", strict=True)
                    print(f"ok   {where} (Kubernetes 1.30 schema, strict)")
                except kubernetes_validate.ValidationError as e:
                    fail(f"{where}: {e.message} at {'/'.join(map(str, e.path))}")
    for kind in ["Secret", "Deployment", "ScaledObject", "TriggerAuthentication"]:
        if kind not in found:
            fail(f"no {kind} in deploy/kubernetes")
    return found


def check_against_worker(found, worker):
    help_text = subprocess.run([worker, "--help"], capture_output=True, text=True, check=True).stdout
    deployment = found["Deployment"][0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    for env in container.get("env", []):
        if env["name"].startswith("PGTRICKLE") and f"env: {env['name']}=" not in help_text:
            fail(f"Deployment sets {env['name']}, which pg_trickle_worker does not read")
    paths = {container["livenessProbe"]["httpGet"]["path"], container["readinessProbe"]["httpGet"]["path"]}
    if paths != {"/healthz", "/readyz"}:
        fail(f"probes ask for {paths}; the worker serves /healthz and /readyz")
    addr = next((e["value"] for e in container["env"] if e["name"] == "PGTRICKLE_WORKER_HEALTH_ADDR"), "")
    port = container["ports"][0]["containerPort"]
    if not addr.endswith(f":{port}"):
        fail(f"the worker listens on {addr!r} but the container port is {port}")
    target = found["ScaledObject"][0]["spec"]["scaleTargetRef"]["name"]
    if target != deployment["metadata"]["name"]:
        fail(f"the ScaledObject scales {target!r}, not the Deployment {deployment['metadata']['name']!r}")
    print("ok   the manifests match what pg_trickle_worker reads and serves")


def check_dockerfile():
    parser = DockerfileParser(path=str(HERE / "Dockerfile"))
    stages = [i for i in parser.structure if i["instruction"] == "FROM"]
    if len(stages) < 2:
        fail("the Dockerfile is not multi-stage")
        return
    final = parser.structure[parser.structure.index(stages[-1]):]
    if not stages[-1]["value"].startswith("scratch"):
        fail(f"the final image is {stages[-1]['value']!r}, not an empty one (scratch)")
    users = [i["value"] for i in final if i["instruction"] == "USER"]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        fail("the final image does not run as a non-root user")
    if not any(i["instruction"] == "ENTRYPOINT" and "pg_trickle_worker" in i["value"] for i in final):
        fail("the final image's ENTRYPOINT is not pg_trickle_worker")
    build = "\n".join(i["value"] for i in parser.structure if i["instruction"] == "RUN")
    if "crt-static" not in build or "-p pg_trickle_worker" not in build:
        fail("the build stage does not build pg_trickle_worker statically")
    if not failures:
        print("ok   Dockerfile: multi-stage, static build, scratch image, non-root user")


if __name__ == "__main__":
    found = check_manifests()
    if len(sys.argv) > 1 and not failures:
        check_against_worker(found, sys.argv[1])
    check_dockerfile()
    sys.exit(1 if failures else 0)
