"""deploy/ manifests are hardened: non-root, read-only, no capabilities, limits, NetworkPolicy."""
from __future__ import annotations

from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SERVING_PORTS = {8500, 8501}


def _kubernetes():
    return {d["kind"]: d for d in yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text()) if d}


def test_kubernetes_pod_runs_non_root_read_only_without_capabilities_and_with_limits():
    pod = _kubernetes()["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"]:
        security = container["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"] and "add" not in security["capabilities"]
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"])
        assert {"cpu", "memory"} <= set(resources["limits"])
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["models"]["readOnly"] is True and mounts["config"]["readOnly"] is True
        writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
        assert writable == {"/tmp"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["readOnly"] is True
    assert "emptyDir" in volumes["tmp"]


def test_network_policy_admits_only_labelled_pods_to_the_serving_ports():
    documents = _kubernetes()
    policy = documents["NetworkPolicy"]["spec"]
    pod_labels = documents["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    assert len(policy["ingress"]) == 1
    rule = policy["ingress"][0]
    assert [set(peer) for peer in rule["from"]] == [{"podSelector"}]  # no ipBlock, no namespaces
    assert rule["from"][0]["podSelector"]["matchLabels"]  # a label, not every pod
    assert {(p["protocol"], p["port"]) for p in rule["ports"]} == {("TCP", port) for port in SERVING_PORTS}


def test_compose_service_is_hardened_as_far_as_compose_can_say():
    service = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]["tf-serving"]
    uid = service["user"].split(":")[0]
    assert uid.isdigit() and int(uid) > 0
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"] and "cap_add" not in service
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["mem_limit"] and float(service["cpus"]) > 0 and service["pids_limit"] > 0
    assert all(v.endswith(":ro") for v in service["volumes"])
    assert all(p.startswith("127.0.0.1:") for p in service["ports"])


def test_deploy_readme_states_what_is_and_is_not_protected():
    text = (DEPLOY / "README.md").read_text()
    for phrase in ("no authentication", "--ssl_config_file", "client_verify", "model directory",
                   "model scan", "--allowed_ops", "NetworkPolicy"):
        assert phrase in text, phrase
