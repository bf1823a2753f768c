#!/usr/bin/env python3
"""Static checks of the deployment files (no Docker engine needed): the YAML and JSON parse,
compose services reference files that exist and ports that match, Prometheus scrapes a service
that listens there, and the dashboard and alerts only use metrics cdcr emits."""
import json, os, re, sys
import yaml

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.chdir(root)
errors = []
# The metrics cdcr emits: the names in CDCRMetrics.help (every metric has a HELP text there).
METRICS = set(re.findall(r'^\s*"(cdcr_[a-z_]+)":', open("Sources/CDCR/Admin/Metrics.swift").read(), re.M))

compose = yaml.safe_load(open("docker-compose.yml"))
services = compose.get("services", {})
for required in ["kafka", "source-db", "target-db", "cdcr-relay", "cdcr-run", "prometheus"]:
    if required not in services:
        errors.append(f"docker-compose.yml: no service {required}")
for name, svc in services.items():
    build = svc.get("build")
    if build is not None:
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        if not os.path.isfile(os.path.join(context, dockerfile)):
            errors.append(f"{name}: build file {dockerfile} missing")
    for vol in svc.get("volumes", []):
        host = vol.split(":")[0]
        if host.startswith(".") and not os.path.exists(host):
            errors.append(f"{name}: volume source {host} does not exist")
    for port in svc.get("ports", []):
        if not re.fullmatch(r"\d{1,5}:\d{1,5}", str(port)):
            errors.append(f"{name}: port mapping {port!r} is not HOST:CONTAINER")
    for dep in (svc.get("depends_on") or []):
        if dep not in services:
            errors.append(f"{name}: depends on unknown service {dep}")

prom = yaml.safe_load(open("config/prometheus.yml"))
for job in prom["scrape_configs"]:
    for sc in job.get("static_configs", []):
        for target in sc["targets"]:
            host, port = target.rsplit(":", 1)
            svc = services.get(host)
            if svc is None:
                errors.append(f"prometheus.yml: target {target} is not a compose service")
            elif f"0.0.0.0:{port}" not in " ".join(map(str, svc.get("command", []))):
                errors.append(f"prometheus.yml: {host} does not listen on {port} for other containers")

dockerfile = open("Dockerfile").read()
for needle in ["AS build", "librdkafka-dev", "libpq-dev", "librdkafka1", "libpq5", "ENTRYPOINT"]:
    if needle not in dockerfile:
        errors.append(f"Dockerfile: missing {needle!r}")

def metric_names(expr):
    return {m for m in re.findall(r"cdcr_[a-z_]+", expr)}

alerts = yaml.safe_load(open("config/alerts.yml"))
for group in alerts["groups"]:
    for rule in group["rules"]:
        for m in metric_names(rule["expr"]):
            if re.sub(r"_(bucket|count|sum)$", "", m) not in METRICS:
                errors.append(f"alerts.yml {rule['alert']}: unknown metric {m}")

dash = json.load(open("config/grafana-dashboard.json"))
for panel in dash["panels"]:
    for t in panel["targets"]:
        for m in metric_names(t["expr"]):
            if re.sub(r"_(bucket|count|sum)$", "", m) not in METRICS:
                errors.append(f"grafana panel {panel['title']}: unknown metric {m}")

json.load(open("deploy/debezium-connector.json"))
if errors:
    print("\n".join(errors))
    sys.exit(1)
print(f"deployment files OK: {len(services)} services, {sum(len(g['rules']) for g in alerts['groups'])} alert rules, {len(dash['panels'])} panels")
