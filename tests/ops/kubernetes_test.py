#!/usr/bin/env python3
"""The Kubernetes manifests in deploy/kubernetes/, offline (no cluster).

  kubernetes_test.py manifests --repo=DIR --presenced=BIN --presence_rest=BIN
      Builds the kustomization with `kubectl kustomize` (what `kubectl apply
      -k` would send) and checks that the objects agree with each other and
      with the programs: --shards names exactly the StatefulSet's pods; the
      headless Service is the StatefulSet's serviceName and selects its pods
      and nothing else; presence-rest's --server shard pattern names the
      same pods through that Service and port; probes, Service ports and
      --listen/--metrics_listen name the same container ports; every flag
      exists in the binary's --helpfull; every $(VAR) is defined; the
      database lives on the claim; resources, security context and grace
      period are set (the grace period as the systemd unit's TimeoutStopSec,
      the user as the Dockerfile's); every file is in the kustomization and
      opens with a comment. Then breaks the objects on purpose, one way at a
      time, and checks that each break is caught.

  kubernetes_test.py schema --repo=DIR [--node_modules=DIR]
      The same objects against Kubernetes' OpenAPI schema, with the npm
      packages kubernetes-models (its validators: types, formats, enums,
      required fields) and typescript (its excess-property check on
      kubernetes-models' types: a misspelt or unknown field). NODE_MODULES
      defaults to npm's global folder (`npm root -g`). Also checks that both
      reject a broken copy.

kubectl's own validation is not used: `kubectl apply|create --dry-run=client`
needs an API server even with --validate=false (to map kinds to resources),
in Debian 12's kubectl 1.20 as in 1.32. `kubectl kustomize` needs none.

Needs python3-yaml, kubectl (Debian's kubernetes-client, or any kubectl),
and for `schema` node with the two npm packages. Exit status 0 pass, 1 fail.
"""
import argparse
import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

# One way of reporting for every ops check: ops_test.py, beside this file.
from ops_test import FAIL, PASS, Failures  # noqa: E402

MANIFESTS = "deploy/kubernetes"
SHARDS_PY = "client/python/presence_client/shards.py"
DOCKERFILE = "Dockerfile"
PRESENCED_UNIT = "tools/systemd/presenced.service.in"
PRESENCE_REST_UNIT = "tools/systemd/presence-rest.service.in"

PRESENCED_BINARY = "/usr/local/bin/presenced"
PRESENCE_REST_BINARY = "/usr/local/bin/presence-rest"
INSTALL_HINT = "tools/install-deps.sh"




def read(repo, path):
    with open(os.path.join(repo, path)) as f:
        return f.read()


# ---------------------------------------------------------------------------
# kubectl kustomize: the objects `kubectl apply -k` would send.

def kustomize(repo):
    """(objects, None) or (None, reason)."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        return None, (f"kubectl is not installed (Debian's kubernetes-client package; {INSTALL_HINT})")
    # No cluster is involved: an empty configuration makes sure of it.
    env = dict(os.environ, KUBECONFIG=os.devnull)
    version = subprocess.run([kubectl, "version", "--client"], capture_output=True, text=True, env=env)
    print(f"$ kubectl version --client\n{(version.stdout + version.stderr).strip()}")
    result = subprocess.run([kubectl, "kustomize", os.path.join(repo, MANIFESTS)],
                            capture_output=True, text=True, env=env, timeout=60)
    print(f"$ kubectl kustomize {MANIFESTS}: exit {result.returncode}")
    if result.returncode != 0:
        return None, f"kubectl kustomize {MANIFESTS} failed:\n{result.stderr.strip()}"
    objects = [o for o in yaml.safe_load_all(result.stdout) if o]
    for o in objects:
        print(f"  {o.get('apiVersion')} {o.get('kind')} {o.get('metadata', {}).get('name')}")
    if not objects:
        return None, f"kubectl kustomize {MANIFESTS} gave no object"
    return objects, None


# ---------------------------------------------------------------------------
# Helpers over objects.

FLAG_LINE = re.compile(r"^\s+--([A-Za-z0-9_]+) \(", re.M)


def helpfull_flags(binary):
    """The flags Abseil's --helpfull lists (it exits 1 after printing)."""
    result = subprocess.run([binary, "--helpfull"], capture_output=True, text=True, timeout=30)
    return set(FLAG_LINE.findall(result.stdout + result.stderr))


def load_shards_module(repo):
    """client/python/presence_client/shards.py, the Python clients' parser
    of shard maps, by path (its package imports grpc)."""
    sys.dont_write_bytecode = True  # no __pycache__ in the source tree
    spec = importlib.util.spec_from_file_location("presence_shards", os.path.join(repo, SHARDS_PY))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def name_of(o):
    return f"{o['kind']}/{o['metadata']['name']}"


def of_kind(objects, kind):
    return [o for o in objects if o.get("kind") == kind]


def workloads(objects):
    return [o for o in objects if o.get("kind") in ("StatefulSet", "Deployment", "DaemonSet")]


def pod_labels(workload):
    return workload["spec"]["template"].get("metadata", {}).get("labels", {}) or {}


def pod_spec(workload):
    return workload["spec"]["template"]["spec"]


def label_selector_matches(selector, labels):
    """A LabelSelector (matchLabels, matchExpressions) against labels. An
    empty selector matches nothing here: none of ours should be empty."""
    if not selector:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, op, values = expression["key"], expression["operator"], expression.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return bool(selector.get("matchLabels") or selector.get("matchExpressions"))


def service_selects(service, labels):
    selector = service["spec"].get("selector") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def container_port(container, ref):
    """The containerPort a probe or Service names (a number or a port name),
    or None."""
    for port in container.get("ports", []):
        if ref == port["containerPort"] or ref == port.get("name"):
            return port["containerPort"]
    return None


def port_named(container, name):
    return container_port(container, name) if isinstance(name, str) else None


def flags_of(container):
    """[(name, value or None, raw)] of command[1:] + args."""
    argv = list(container.get("command", [])[1:]) + list(container.get("args", []))
    flags = []
    for raw in argv:
        match = re.fullmatch(r"--?([A-Za-z0-9_]+)(?:=(.*))?", raw, re.S)
        flags.append((match.group(1), match.group(2), raw) if match else (None, None, raw))
    return flags


def flag(container, name):
    """The last value of --name (a later flag wins, as in Abseil)."""
    value = None
    for flag_name, flag_value, _ in flags_of(container):
        if flag_name == name:
            value = flag_value
    return value


def host_port(address):
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else None


def env_field(container, name):
    """The fieldRef.fieldPath env var `name` comes from, or None."""
    for env in container.get("env", []):
        if env["name"] == name:
            return ((env.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
    return None


def env_names(container):
    return {env["name"] for env in container.get("env", [])}


QUANTITY = re.compile(r"^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
SCALE = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
         "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(text):
    match = QUANTITY.match(str(text))
    return float(match.group(1)) * SCALE[match.group(2)] if match else None


def first_comment_block(text):
    """The comment lines a file opens with."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


# ---------------------------------------------------------------------------
# The checks, over rendered objects (so that the self-test can break them).

class Context:
    """What the checks compare the objects with: the programs' flags, the
    shard-map parser, the Dockerfile and the systemd units."""

    def __init__(self, repo, presenced_bin, presenced_flags, rest_bin, rest_flags):
        self.repo = repo
        self.presenced_bin = presenced_bin
        self.rest_bin = rest_bin
        self.presenced_flags = presenced_flags
        self.rest_flags = rest_flags
        self.shards = load_shards_module(repo)
        dockerfile = read(repo, DOCKERFILE)
        user = re.search(r"^USER\s+(\d+):(\d+)\s*$", dockerfile, re.M)
        self.uid, self.gid = (int(user.group(1)), int(user.group(2))) if user else (None, None)
        entrypoint = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", dockerfile, re.M)
        self.entrypoint = json.loads(entrypoint.group(1)) if entrypoint else []
        self.binaries = set(re.findall(r"/usr/local/bin/[A-Za-z0-9_-]+", dockerfile))
        self.stop_timeout = {}
        for program, unit in (("presenced", PRESENCED_UNIT), ("presence-rest", PRESENCE_REST_UNIT)):
            match = re.search(r"^TimeoutStopSec=(\d+)\s*$", read(repo, unit), re.M)
            self.stop_timeout[program] = int(match.group(1)) if match else None


def check_flags(where, container, known, binary, failures):
    """Every flag is one the program defines; every $(VAR) is defined."""
    for name, _, raw in flags_of(container):
        if not failures.check(name is not None, f"{where}: {raw!r} is not a --flag=value (presenced "
                                                f"and presence-rest take no other argument)"):
            continue
        if known is not None:
            defined = name in known or (name.startswith("no") and name[2:] in known)
            failures.check(defined, f"{where}: --{name} is not a flag of {container['command'][0]} "
                                    f"(not in {binary} --helpfull)")
    argv = container.get("command", []) + container.get("args", [])
    for raw in argv:
        # Kubernetes expands $(VAR) from the container's env, and leaves an
        # undefined one as it is: presenced would get the literal text.
        for var in re.findall(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", raw):
            failures.check(var in env_names(container),
                           f"{where}: {raw!r} uses $({var}), which is not in the container's env")


def check_common(workload, failures, ctx):
    """Resources, security context, image and command of every workload."""
    where = name_of(workload)
    spec = pod_spec(workload)
    pod_security = spec.get("securityContext", {})
    for container in spec.get("containers", []):
        cwhere = f"{where} container {container['name']}"
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                value = resources.get(kind, {}).get(resource)
                failures.check(value is not None and quantity(value) is not None,
                               f"{cwhere}: no {kind}.{resource} (the figures are derived in its comment)")
        for resource in ("cpu", "memory"):
            request = quantity(resources.get("requests", {}).get(resource, ""))
            limit = quantity(resources.get("limits", {}).get(resource, ""))
            if request is not None and limit is not None:
                failures.check(limit >= request, f"{cwhere}: limits.{resource} is below requests.{resource}")
        security = container.get("securityContext", {})
        failures.check(security.get("runAsNonRoot", pod_security.get("runAsNonRoot")) is True,
                       f"{cwhere}: runAsNonRoot is not true")
        failures.check(security.get("readOnlyRootFilesystem") is True,
                       f"{cwhere}: readOnlyRootFilesystem is not true")
        failures.check(security.get("allowPrivilegeEscalation") is False,
                       f"{cwhere}: allowPrivilegeEscalation is not false")
        failures.check("ALL" in (security.get("capabilities", {}).get("drop") or []),
                       f"{cwhere}: capabilities do not drop ALL")
        uid = security.get("runAsUser", pod_security.get("runAsUser"))
        gid = security.get("runAsGroup", pod_security.get("runAsGroup"))
        failures.check((uid, gid) == (ctx.uid, ctx.gid),
                       f"{cwhere}: runs as {uid}:{gid}, the image's user is {ctx.uid}:{ctx.gid} "
                       f"({DOCKERFILE} USER): files it made before would not be its own")
        command = container.get("command") or []
        failures.check(bool(command) and command[0] in ctx.binaries,
                       f"{cwhere}: command {command!r} is not a binary the {DOCKERFILE} installs "
                       f"({sorted(ctx.binaries)})")


def check_presenced(objects, failures, ctx):
    sets = of_kind(objects, "StatefulSet")
    if not failures.check(len(sets) == 1, f"expected one StatefulSet (presenced), found {len(sets)}"):
        return None
    sts = sets[0]
    where = name_of(sts)
    spec = sts["spec"]
    replicas = spec.get("replicas", 1)
    labels = pod_labels(sts)
    failures.check(spec.get("podManagementPolicy") == "Parallel",
                   f"{where}: podManagementPolicy is not Parallel (shards do not wait for each other)")
    failures.check(label_selector_matches(spec.get("selector"), labels),
                   f"{where}: its selector does not match its pod template's labels")
    containers = [c for c in pod_spec(sts).get("containers", []) if c["name"] == "presenced"]
    if not failures.check(len(containers) == 1, f"{where}: no container named presenced"):
        return None
    c = containers[0]
    cwhere = f"{where} container presenced"
    failures.check(c.get("command", [None])[0] == (ctx.entrypoint or [None])[0],
                   f"{cwhere}: command {c.get('command')} is not the image's presenced "
                   f"({DOCKERFILE} ENTRYPOINT {ctx.entrypoint[:1]})")
    check_flags(cwhere, c, ctx.presenced_flags, ctx.presenced_bin, failures)

    # The shard names: one per replica, the StatefulSet's own pod names.
    pods = [f"{sts['metadata']['name']}-{i}" for i in range(replicas)]
    shards = flag(c, "shards")
    if failures.check(shards is not None, f"{cwhere}: no --shards"):
        try:
            names = [s.name for s in ctx.shards.ShardMap.parse_names(shards).shards]
        except ValueError as error:
            names = None
            failures.check(False, f"{cwhere}: --shards={shards}: {error}")
        if names is not None:
            failures.check(names == pods,
                           f"{cwhere}: --shards={shards} names {names}, but the StatefulSet's "
                           f"{replicas} replicas are {pods}: the count and names must agree")
    shard = flag(c, "shard")
    var = re.fullmatch(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", shard or "")
    failures.check(var is not None and env_field(c, var.group(1)) == "metadata.name",
                   f"{cwhere}: --shard={shard} is not $(VAR) with VAR the pod's name "
                   f"(env valueFrom.fieldRef.fieldPath: metadata.name)")

    # Ports: --listen and the probes on the container port `grpc`,
    # --metrics_listen on `metrics`.
    grpc_port = port_named(c, "grpc")
    metrics_port = port_named(c, "metrics")
    failures.check(grpc_port is not None, f"{cwhere}: no container port named grpc")
    failures.check(metrics_port is not None, f"{cwhere}: no container port named metrics")
    for flag_name, port in (("listen", grpc_port), ("metrics_listen", metrics_port)):
        value = flag(c, flag_name)
        if failures.check(value is not None, f"{cwhere}: no --{flag_name}"):
            host, number = host_port(value)
            failures.check(number == port, f"{cwhere}: --{flag_name}={value} is not the container port {port}")
            failures.check(host in ("0.0.0.0", "::", ""),
                           f"{cwhere}: --{flag_name}={value} binds {host}: the kubelet's probes and other "
                           f"pods reach the pod's own address, not loopback")
    for probe_name in ("readinessProbe", "livenessProbe"):
        probe = c.get(probe_name)
        if not failures.check(probe is not None, f"{cwhere}: no {probe_name}"):
            continue
        grpc = probe.get("grpc")
        if failures.check(grpc is not None, f"{cwhere}: {probe_name} is not a grpc probe (grpc.health.v1)"):
            failures.check(container_port(c, grpc.get("port")) is not None and grpc.get("port") == grpc_port,
                           f"{cwhere}: {probe_name} probes port {grpc.get('port')}, not --listen's "
                           f"container port {grpc_port}")

    # The database on the volume claim, and /tmp writable (SQLite's temporary
    # files) on a read-only root filesystem.
    claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
    failures.check(bool(claims), f"{where}: no volumeClaimTemplates (each shard needs its own database)")
    for template in spec.get("volumeClaimTemplates", []):
        tspec = template.get("spec", {})
        failures.check("ReadWriteOnce" in tspec.get("accessModes", []),
                       f"{where}: claim {template['metadata']['name']} is not ReadWriteOnce")
        failures.check(quantity(tspec.get("resources", {}).get("requests", {}).get("storage", "")) is not None,
                       f"{where}: claim {template['metadata']['name']} requests no storage")
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in c.get("volumeMounts", [])}
    db = flag(c, "db")
    if failures.check(db is not None, f"{cwhere}: no --db"):
        failures.check(mounts.get(os.path.dirname(db)) in claims,
                       f"{cwhere}: --db={db} is not in a directory where a volumeClaimTemplate is mounted "
                       f"(mounts: {mounts})")
    failures.check("/tmp" in mounts, f"{cwhere}: /tmp is not mounted (the root filesystem is read-only)")
    failures.check(pod_spec(sts).get("terminationGracePeriodSeconds") == ctx.stop_timeout["presenced"],
                   f"{where}: terminationGracePeriodSeconds is "
                   f"{pod_spec(sts).get('terminationGracePeriodSeconds')}, not the "
                   f"{ctx.stop_timeout['presenced']} s presenced's systemd unit gives its shutdown "
                   f"(TimeoutStopSec in {PRESENCED_UNIT})")
    resources = c.get("resources", {})
    if resources:
        failures.check(resources.get("requests", {}).get("memory") == resources.get("limits", {}).get("memory"),
                       f"{cwhere}: memory request and limit differ (a shard's only copy should not be "
                       f"evicted for a neighbour's burst)")

    # The headless Service that names the pods.
    services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
    service = services.get(spec.get("serviceName"))
    if failures.check(service is not None, f"{where}: serviceName {spec.get('serviceName')!r} "
                                           f"is not a Service here"):
        swhere = name_of(service)
        failures.check(service["spec"].get("clusterIP") == "None",
                       f"{swhere}: not headless (clusterIP: None): pods get no DNS name of their own")
        failures.check(service["spec"].get("publishNotReadyAddresses") is True,
                       f"{swhere}: publishNotReadyAddresses is not true (a shard has no stand-in; "
                       f"see the file's comment)")
        failures.check(service_selects(service, labels), f"{swhere}: does not select {where}'s pods")
        for other in workloads(objects):
            if other is not sts:
                failures.check(not service_selects(service, pod_labels(other)),
                               f"{swhere}: also selects {name_of(other)}'s pods")
        for port in service["spec"].get("ports", []):
            target = container_port(c, port.get("targetPort", port["port"]))
            failures.check(target is not None and target == port["port"],
                           f"{swhere}: port {port.get('name')} {port['port']} -> {port.get('targetPort')} "
                           f"is not the same container port of presenced")
        failures.check(grpc_port in [p["port"] for p in service["spec"].get("ports", [])],
                       f"{swhere}: does not serve the grpc port {grpc_port}")
    return {"sts": sts, "pods": pods, "service": spec.get("serviceName"), "grpc_port": grpc_port}


def check_disruption_budgets(objects, failures):
    budgets = of_kind(objects, "PodDisruptionBudget")
    for workload in workloads(objects):
        mine = [b for b in budgets if label_selector_matches(b["spec"].get("selector"), pod_labels(workload))]
        if failures.check(len(mine) == 1, f"{name_of(workload)}: {len(mine)} PodDisruptionBudgets select "
                                          f"its pods, expected one"):
            failures.check(mine[0]["spec"].get("maxUnavailable") == 1,
                           f"{name_of(mine[0])}: maxUnavailable is not 1")
    for budget in budgets:
        selected = [w for w in workloads(objects)
                    if label_selector_matches(budget["spec"].get("selector"), pod_labels(w))]
        failures.check(len(selected) == 1, f"{name_of(budget)}: selects {len(selected)} workloads' pods")


def check_presence_rest(objects, presenced, failures, ctx):
    deployments = [d for d in of_kind(objects, "Deployment") if d["metadata"]["name"] == "presence-rest"]
    if not deployments:
        print("(no presence-rest Deployment: its checks skipped)")
        return
    d = deployments[0]
    where = name_of(d)
    failures.check(label_selector_matches(d["spec"].get("selector"), pod_labels(d)),
                   f"{where}: its selector does not match its pod template's labels")
    containers = [c for c in pod_spec(d).get("containers", []) if c["name"] == "presence-rest"]
    if not failures.check(len(containers) == 1, f"{where}: no container named presence-rest"):
        return
    c = containers[0]
    cwhere = f"{where} container presence-rest"
    failures.check(c.get("command", [None])[0] == PRESENCE_REST_BINARY,
                   f"{cwhere}: command is not {PRESENCE_REST_BINARY}")
    check_flags(cwhere, c, ctx.rest_flags, ctx.rest_bin, failures)

    # --server: the shard map, naming presenced's pods through its headless
    # Service on its gRPC port.
    server = flag(c, "server")
    if failures.check(server is not None, f"{cwhere}: no --server (it would call 127.0.0.1:50051)") \
            and presenced is not None:
        namespace_vars = [v for v in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", server)]
        for var in namespace_vars:
            failures.check(env_field(c, var) == "metadata.namespace",
                           f"{cwhere}: --server uses $({var}), which is not the pod's namespace "
                           f"(fieldRef metadata.namespace)")
        spec_text = re.sub(r"\$\([A-Za-z_][A-Za-z0-9_]*\)", "NAMESPACE", server)
        try:
            shard_map = ctx.shards.ShardMap.parse(spec_text)
        except ValueError as error:
            shard_map = None
            failures.check(False, f"{cwhere}: --server={server}: {error}")
        if shard_map is not None:
            names = [s.name for s in shard_map.shards]
            failures.check(shard_map.sharded and names == presenced["pods"],
                           f"{cwhere}: --server={server} names shards {names}, presenced's --shards "
                           f"and pods are {presenced['pods']}")
            for shard in shard_map.shards if shard_map.sharded else []:
                host, port = host_port(shard.target)
                labels = host.split(".")
                failures.check(labels[:2] == [shard.name, presenced["service"]]
                               and (len(labels) == 2 or labels[2:4] == ["NAMESPACE", "svc"]),
                               f"{cwhere}: --server target {shard.target} is not "
                               f"{shard.name}.{presenced['service']}[.$(NAMESPACE).svc], the pod's name "
                               f"through the headless Service")
                failures.check(port == presenced["grpc_port"],
                               f"{cwhere}: --server target {shard.target} is not presenced's port "
                               f"{presenced['grpc_port']}")

    http_port = port_named(c, "http")
    metrics_port = port_named(c, "metrics")
    for flag_name, port in (("listen", http_port), ("metrics_listen", metrics_port)):
        value = flag(c, flag_name)
        if failures.check(value is not None and port is not None,
                          f"{cwhere}: --{flag_name} or its container port is missing"):
            host, number = host_port(value)
            failures.check(number == port, f"{cwhere}: --{flag_name}={value} is not the container port {port}")
            failures.check(host in ("0.0.0.0", "::", ""), f"{cwhere}: --{flag_name}={value} binds {host}")
    for probe_name in ("readinessProbe", "livenessProbe"):
        probe = c.get(probe_name) or {}
        action = probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc")
        if failures.check(action is not None, f"{cwhere}: no {probe_name}"):
            failures.check(container_port(c, action.get("port")) == http_port,
                           f"{cwhere}: {probe_name} port {action.get('port')} is not --listen's {http_port}")
            failures.check((probe.get("httpGet") or {}).get("path") != "/healthz",
                           f"{cwhere}: {probe_name} on /healthz follows presenced, not presence-rest "
                           f"(see the file's comment)")
    secret = flag(c, "jwt_secret_file")
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod_spec(d).get("volumes", [])}
    if failures.check(secret is not None, f"{cwhere}: no --jwt_secret_file (required)"):
        volume = volumes.get(mounts.get(os.path.dirname(secret)), {})
        items = [i["path"] for i in (volume.get("secret") or {}).get("items", [])]
        failures.check("secret" in volume and (not items or os.path.basename(secret) in items),
                       f"{cwhere}: --jwt_secret_file={secret} is not a file of a mounted Secret")
    stop = ctx.stop_timeout["presence-rest"]
    pause = 0
    pre_stop = ((c.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command", [])
    if len(pre_stop) == 2 and pre_stop[0].endswith("sleep") and pre_stop[1].isdigit():
        pause = int(pre_stop[1])
    grace = pod_spec(d).get("terminationGracePeriodSeconds", 30)
    failures.check(stop is not None and grace >= stop + pause,
                   f"{where}: terminationGracePeriodSeconds {grace} is below the preStop pause ({pause} s) "
                   f"plus the {stop} s of presence-rest's systemd unit (TimeoutStopSec)")
    services = [s for s in of_kind(objects, "Service") if service_selects(s, pod_labels(d))]
    if failures.check(len(services) == 1, f"{where}: {len(services)} Services select its pods, expected one"):
        for port in services[0]["spec"].get("ports", []):
            target = container_port(c, port.get("targetPort", port["port"]))
            failures.check(target is not None, f"{name_of(services[0])}: port {port.get('name')} names no "
                                               f"container port of presence-rest")


def check_objects(objects, failures, ctx):
    presenced = check_presenced(objects, failures, ctx)
    check_presence_rest(objects, presenced, failures, ctx)
    check_disruption_budgets(objects, failures)
    for workload in workloads(objects):
        check_common(workload, failures, ctx)


def check_files(repo, failures):
    """Every manifest is in the kustomization and opens with a comment (why
    it is there); every image is one the kustomization can retag."""
    folder = os.path.join(repo, MANIFESTS)
    kustomization = yaml.safe_load(read(repo, os.path.join(MANIFESTS, "kustomization.yaml")))
    listed = set(kustomization.get("resources", []))
    files = sorted(f for f in os.listdir(folder) if f.endswith((".yaml", ".yml")))
    image_names = {i["name"] for i in kustomization.get("images", [])}
    for f in files:
        text = read(repo, os.path.join(MANIFESTS, f))
        failures.check(len(first_comment_block(text)) >= 2,
                       f"{MANIFESTS}/{f}: does not open with a comment saying why it is there")
        if f == "kustomization.yaml":
            continue
        failures.check(f in listed, f"{MANIFESTS}/{f}: not in kustomization.yaml's resources")
        for o in yaml.safe_load_all(text):
            if o and o.get("kind") in ("StatefulSet", "Deployment"):
                for c in pod_spec(o).get("containers", []):
                    failures.check(c["image"].split(":")[0] in image_names,
                                   f"{MANIFESTS}/{f}: image {c['image']} has no entry in "
                                   f"kustomization.yaml's images (it could not be retagged)")
    for f in listed:
        failures.check(f in files, f"kustomization.yaml lists {f}, which is not in {MANIFESTS}")


# Each break must be caught: (what, how to break a copy of the objects,
# a word the failure must contain).
def _find(objects, kind, name=None):
    return next(o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name))


def _break_replicas(objects):
    _find(objects, "StatefulSet")["spec"]["replicas"] = 4


def _break_service_selector(objects):
    _find(objects, "Service", _find(objects, "StatefulSet")["spec"]["serviceName"])["spec"]["selector"] = \
        {"app.kubernetes.io/name": "presenced-typo"}


def _break_probe_port(objects):
    pod_spec(_find(objects, "StatefulSet"))["containers"][0]["readinessProbe"] = {"grpc": {"port": 50052}}


def _break_unknown_flag(objects):
    pod_spec(_find(objects, "StatefulSet"))["containers"][0]["args"].append("--shard_count=3")


def _break_rest_server(objects):
    c = pod_spec(_find(objects, "Deployment", "presence-rest"))["containers"][0]
    c["args"] = [a.replace("{0..2}", "{0..3}") if a.startswith("--server=") else a for a in c["args"]]


def _break_env(objects):
    pod_spec(_find(objects, "StatefulSet"))["containers"][0]["env"] = []


def _break_db(objects):
    c = pod_spec(_find(objects, "StatefulSet"))["containers"][0]
    c["args"] = [a if not a.startswith("--db=") else "--db=/var/lib/presenced/presence.db" for a in c["args"]]


BREAKS = [
    ("4 replicas, 3 shards named", _break_replicas, "the count and names must agree"),
    ("the headless Service selects other pods", _break_service_selector, "does not select"),
    ("a probe on another port", _break_probe_port, "readinessProbe"),
    ("a flag presenced does not have", _break_unknown_flag, "--shard_count"),
    ("presence-rest routes to 4 shards", _break_rest_server, "--server"),
    ("POD_NAME undefined", _break_env, "POD_NAME"),
    ("the database off the volume", _break_db, "--db"),
]


def run_manifests(repo, presenced_bin, rest_bin):
    failures = Failures()
    objects, error = kustomize(repo)
    if objects is None:
        failures.check(False, error)
        return failures.report()
    presenced_flags = rest_flags = None
    for binary, label in ((presenced_bin, "presenced"), (rest_bin, "presence-rest")):
        if failures.check(binary and os.access(binary, os.X_OK), f"no {label} binary ({binary!r})"):
            flags = helpfull_flags(binary)
            print(f"$ {label} --helpfull: {len(flags)} flags")
            failures.check(len(flags) > 5, f"{label} --helpfull listed {len(flags)} flags")
            if label == "presenced":
                presenced_flags = flags
            else:
                rest_flags = flags
    ctx = Context(repo, presenced_bin, presenced_flags, rest_bin, rest_flags)
    check_objects(objects, failures, ctx)
    check_files(repo, failures)

    # The checks above must catch each of these.
    for what, breaker, word in BREAKS:
        if breaker is _break_unknown_flag and presenced_flags is None:
            continue
        broken = copy.deepcopy(objects)
        breaker(broken)
        caught = Failures()
        check_objects(broken, caught, ctx)
        hits = [m for m in caught.items if word in m]
        print(f"self-test, {what}: {len(caught.items)} failure(s)"
              + (f", e.g. {hits[0]}" if hits else ""))
        failures.check(hits, f"self-test: {what} was not caught (no failure mentioning {word!r})")
    return failures.report()


# ---------------------------------------------------------------------------
# schema: kubernetes-models' validators and typescript's excess-property
# check.

def npm_root():
    npm = shutil.which("npm")
    if not npm:
        return None
    result = subprocess.run([npm, "root", "-g"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def type_name(o):
    """kubernetes-models' module and interface for an object."""
    group, _, version = o["apiVersion"].rpartition("/")
    return f"kubernetes-models/{group + '/' if group else ''}{version}/{o['kind']}", f"I{o['kind']}"


def write_typescript(folder, objects, modules):
    """One .ts file per object, `const x: IKind = {object}`: tsc reports a
    field the type does not have, a wrong type, a value outside an enum."""
    os.symlink(modules, os.path.join(folder, "node_modules"))
    files = []
    for o in objects:
        module, interface = type_name(o)
        path = f"{o['kind']}-{o['metadata']['name']}.ts"
        with open(os.path.join(folder, path), "w") as f:
            f.write(f'import type {{ {interface} }} from "{module}";\n'
                    f"export const object: {interface} = {json.dumps(o, indent=2)};\n")
        files.append(path)
    with open(os.path.join(folder, "tsconfig.json"), "w") as f:
        json.dump({"compilerOptions": {"strict": True, "noEmit": True, "module": "nodenext",
                                       "moduleResolution": "nodenext", "target": "es2022",
                                       "skipLibCheck": True, "types": []},
                   "files": files}, f)


def indent(text):
    """A tool's output, set off from this test's own PASS and FAIL lines."""
    return "\n".join("  | " + line for line in text.strip().splitlines())


def schema_check(objects, modules, label):
    """(ajv exit status, tsc exit status, output)."""
    node = shutil.which("node")
    here = os.path.dirname(os.path.abspath(__file__))
    output = []
    with tempfile.TemporaryDirectory(prefix="kubernetes_test.") as tmp:
        path = os.path.join(tmp, "objects.json")
        with open(path, "w") as f:
            json.dump(objects, f)
        ajv = subprocess.run([node, os.path.join(here, "kubernetes_schema.mjs"), modules, path],
                             capture_output=True, text=True, timeout=120)
        output.append(f"$ node kubernetes_schema.mjs ({label}): exit {ajv.returncode}\n"
                      f"{indent(ajv.stdout + ajv.stderr)}")
        ts_dir = os.path.join(tmp, "ts")
        os.mkdir(ts_dir)
        write_typescript(ts_dir, objects, modules)
        tsc = subprocess.run([node, os.path.join(modules, "typescript", "bin", "tsc"), "-p", ts_dir],
                             capture_output=True, text=True, timeout=300, cwd=ts_dir)
        output.append(f"$ tsc -p ({label}): exit {tsc.returncode}\n{indent(tsc.stdout + tsc.stderr)}")
    return ajv.returncode, tsc.returncode, "\n".join(output)


def run_schema(repo, modules):
    failures = Failures()
    objects, error = kustomize(repo)
    if objects is None:
        failures.check(False, error)
        return failures.report()
    modules = modules or npm_root()
    hint = (f"npm install --global kubernetes-models typescript ({INSTALL_HINT}; "
            f"or pass --node_modules=DIR)")
    if not failures.check(shutil.which("node") is not None, f"node is not installed ({INSTALL_HINT})"):
        return failures.report()
    for package, entry in (("kubernetes-models", "package.json"), ("typescript", "bin/tsc")):
        failures.check(modules and os.path.exists(os.path.join(modules, package, entry)),
                       f"{package} is not in {modules!r}: {hint}")
    if failures.items:
        return failures.report()
    for package in ("kubernetes-models", "typescript"):
        with open(os.path.join(modules, package, "package.json")) as f:
            print(f"{package} {json.load(f)['version']} from {modules}")

    ajv, tsc, output = schema_check(objects, modules, "the manifests")
    print(output)
    failures.check(ajv == 0, "kubernetes-models: the manifests do not match Kubernetes' schema (above)")
    failures.check(tsc == 0, "typescript: the manifests have fields Kubernetes' types do not (above)")

    # Both must reject a broken copy: a string where an integer belongs
    # (kubernetes-models) and a misspelt field (typescript only: the
    # OpenAPI schema allows unknown fields, the API server drops or refuses
    # them).
    broken = copy.deepcopy(objects)
    sts = _find(broken, "StatefulSet")
    sts["spec"]["replicas"] = str(sts["spec"].get("replicas", 1))
    service = _find(broken, "Service", sts["spec"]["serviceName"])
    service["spec"]["publishNotReadyAdresses"] = service["spec"].pop("publishNotReadyAddresses", True)
    ajv, tsc, output = schema_check(broken, modules, "self-test: a broken copy")
    print(output)
    failures.check(ajv != 0 and "replicas" in output,
                   "self-test: kubernetes-models accepted replicas: \"3\" (a string)")
    failures.check(tsc != 0 and "publishNotReadyAdresses" in output,
                   "self-test: typescript accepted a misspelt field (publishNotReadyAdresses)")
    return failures.report()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["manifests", "schema"])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--presenced")
    parser.add_argument("--presence_rest")
    parser.add_argument("--node_modules", help="the folder holding kubernetes-models and typescript")
    args = parser.parse_args()
    if args.part == "manifests":
        return run_manifests(args.repo, args.presenced, args.presence_rest)
    return run_schema(args.repo, args.node_modules)


if __name__ == "__main__":
    sys.exit(main())
