#!/usr/bin/env python3
"""The Grafana dashboard and the Prometheus alerts in ops/, against the real
thing.

  ops_test.py rules --repo=DIR
      The dashboard is an importable JSON model (a templated Prometheus data
      source, job and instance variables, a query in every panel); every
      alert has `for`, a severity and annotations whose runbook link names a
      heading that exists; `promtool check rules` accepts the rules and every
      dashboard query (as recording rules, its Grafana variables filled in);
      `promtool test rules` passes ops/prometheus/presenced-alerts.test.yml,
      and that file makes every alert fire.

  ops_test.py presenced --repo=DIR --presenced=BIN
      Starts presenced with --metrics_listen on loopback, makes traffic
      (heartbeats, a batch, watchers, a mark-offline, a refused call, and
      changes refused once its database file is deleted), scrapes /metrics
      over HTTP and checks that every metric the dashboard and the rules
      query exists there, with the labels and label values they match on.

  ops_test.py presence-rest --repo=DIR --presenced=BIN --presence_rest=BIN
      The same for the presence_rest_* metrics, with presence-rest in front
      of presenced and browser traffic (a heartbeat, a refused request, an
      event stream).

The metric names come from tokenising every PromQL expression (a selector
is an identifier that is not a function, keyword or label), not from a list.
Only Debian 12's python3 with python3-yaml and python3-grpcio, and promtool
(Debian's prometheus package). Exit status 0 pass, 1 fail.
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

PASS, FAIL = 0, 1

DASHBOARD = "ops/grafana/presenced.json"
RULES = "ops/prometheus/presenced-alerts.yml"
RULE_TESTS = "ops/prometheus/presenced-alerts.test.yml"

# Series Prometheus makes itself for every target, not exported by anyone.
PROMETHEUS_MADE = {"up"}
# Labels Prometheus attaches to every series of a target.
TARGET_LABELS = {"job", "instance"}
SEVERITIES = {"critical", "warning"}


class Failures:
    """Collects every failed check, so that one run shows all of them."""

    def __init__(self):
        self.items = []

    def check(self, condition, message):
        if not condition:
            self.items.append(message)
        return condition

    def report(self):
        for item in self.items:
            print("FAIL:", item)
        if self.items:
            print(f"{len(self.items)} check(s) failed")
            return FAIL
        print("PASS")
        return PASS


# ---------------------------------------------------------------------------
# PromQL: tokens, and the selectors an expression reads.

TOKEN = re.compile(r"""
   (?P<space>\s+)
  |(?P<comment>\#[^\n]*)
  |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  |(?P<duration>(?:[0-9]+(?:ms|[smhdwy]))+(?![A-Za-z0-9_:]))
  |(?P<number>0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)
  |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  |(?P<variable>\$\{\w+(?::\w+)?\}|\$\w+)
  |(?P<op>=~|!~|==|!=|>=|<=|[-+*/%^<>=(){}\[\],:@])
""", re.X)

# Followed by a parenthesised list of label names.
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
# Neither a metric nor a function.
KEYWORDS = {"and", "or", "unless", "atan2", "bool", "offset", "inf", "nan"}


def tokenize(expr):
    tokens, pos = [], 0
    while pos < len(expr):
        match = TOKEN.match(expr, pos)
        if not match:
            raise ValueError(f"cannot tokenise {expr[pos:pos + 20]!r} in {expr!r}")
        pos = match.end()
        if match.lastgroup not in ("space", "comment"):
            tokens.append((match.lastgroup, match.group()))
    return tokens


def unquote(token):
    if token.startswith("`"):
        return token[1:-1]
    if token.startswith("'"):
        token = '"' + token[1:-1].replace("\\'", "'").replace('"', '\\"') + '"'
    return json.loads(token)


def selectors(expr):
    """The vector selectors of a PromQL expression: [(metric, [(label, op,
    value)])], metric from the name or a __name__ matcher."""
    tokens = tokenize(expr)
    found = []
    i = 0

    def matchers_at(j):
        """Parses `{label op "value", ...}` from tokens[j] == '{'; returns
        (matchers, index after the '}')."""
        matchers = []
        j += 1
        while tokens[j][1] != "}":
            kind, label = tokens[j]
            if kind != "ident" or tokens[j + 1][1] not in ("=", "!=", "=~", "!~") \
                    or tokens[j + 2][0] != "string":
                raise ValueError(f"bad label matcher at {label!r} in {expr!r}")
            matchers.append((label, tokens[j + 1][1], unquote(tokens[j + 2][1])))
            j += 3
            if tokens[j][1] == ",":
                j += 1
        return matchers, j + 1

    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1][1] if i + 1 < len(tokens) else None
        if text == "[":  # a range or subquery: durations only
            while tokens[i][1] != "]":
                i += 1
            i += 1
        elif text == "{":  # a selector without a name
            matchers, i = matchers_at(i)
            names = [v for (l, op, v) in matchers if l == "__name__" and op == "="]
            if not names:
                raise ValueError(f"a selector without a metric name in {expr!r}")
            found.append((names[0], [m for m in matchers if m[0] != "__name__"]))
        elif kind == "ident" and text in LABEL_LIST_KEYWORDS:
            i += 1
            if following == "(":
                while tokens[i][1] != ")":
                    i += 1
                i += 1
        elif kind == "ident" and (following == "(" or following in ("by", "without")):
            i += 1  # a function, or an aggregation (sum by (...) (...))
        elif kind == "ident" and text.lower() not in KEYWORDS:
            if following == "{":
                matchers, i = matchers_at(i + 1)
            else:
                matchers, i = [], i + 1
            found.append((text, matchers))
        else:
            i += 1
    return found


# Grafana's `$__rate_interval` in a range, `$job` in a matcher's value.
LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.+),\s*(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$")


def check_extractor(failures):
    """The tokeniser itself, on expressions whose selectors are known: a
    broken extractor would otherwise pass everything."""
    cases = [
        ('histogram_quantile(0.99, sum by (le, method) (rate(a_bucket{code="OK", job=~"$job"}[5m])))',
         [("a_bucket", [("code", "=", "OK"), ("job", "=~", "$job")])]),
        ("sum(rate(a_total[1m:10s] offset 1h30m)) by (instance) / on(instance) group_left b",
         [("a_total", []), ("b", [])]),
        ('x > bool 0 and y unless {__name__="z", le!="+Inf"} or absent(w) * inf',
         [("x", []), ("y", []), ("z", [("le", "!=", "+Inf")]), ("w", [])]),
        ("sum without (code) (c) > 0.05 and d @ start()", [("c", []), ("d", [])]),
    ]
    for expr, expected in cases:
        got = selectors(expr)
        failures.check(got == expected, f"extractor: {expr!r} gave {got}, expected {expected}")


# ---------------------------------------------------------------------------
# What the dashboard and the rules query.

def load(repo):
    with open(os.path.join(repo, DASHBOARD)) as f:
        dashboard = json.load(f)
    with open(os.path.join(repo, RULES)) as f:
        rules = yaml.safe_load(f)
    return dashboard, rules


def all_panels(dashboard):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def variable_query(variable):
    query = variable.get("query")
    return query.get("query", "") if isinstance(query, dict) else (query or "")


def queries(dashboard, rules):
    """[(where, PromQL)] of every panel target, variable and rule, and
    [(where, metric, label)] of the labels the variables list."""
    exprs, listed = [], []
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            exprs.append((f"panel {panel.get('title')!r} {target.get('refId')}", target.get("expr", "")))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        match = LABEL_VALUES.match(variable_query(variable))
        where = f"variable ${variable.get('name')}"
        if match:
            exprs.append((where, match.group("selector")))
            for metric, _ in selectors(match.group("selector")):
                listed.append((where, metric, match.group("label")))
        else:
            exprs.append((where, variable_query(variable)))
    for group in rules.get("groups", []):
        for rule in group.get("rules", []):
            exprs.append((f"rule {rule.get('alert') or rule.get('record')}", rule.get("expr", "")))
    return exprs, listed


# ---------------------------------------------------------------------------
# rules: static checks and promtool.

def heading_anchors(path):
    """GitHub's anchors of a Markdown file's headings."""
    anchors = set()
    in_code = False
    with open(path) as f:
        for line in f:
            if line.startswith("```"):
                in_code = not in_code
            match = None if in_code else re.match(r"^#{1,6}\s+(.*?)\s*$", line)
            if match:
                text = re.sub(r"[^\w\- ]", "", match.group(1).lower())
                anchors.add(text.replace(" ", "-"))
    return anchors


GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__interval_ms", "__range_s"}
VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def check_dashboard(dashboard, failures):
    failures.check(dashboard.get("title") and dashboard.get("uid"), "dashboard: no title or uid")
    failures.check(isinstance(dashboard.get("schemaVersion"), int), "dashboard: no schemaVersion")
    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    datasource = [v for v in variables.values() if v.get("type") == "datasource"]
    failures.check(len(datasource) == 1 and datasource[0].get("query") == "prometheus",
                   "dashboard: needs one templated data source variable of type prometheus")
    ds_uid = "${%s}" % datasource[0]["name"] if datasource else None
    for name in ("job", "instance"):
        failures.check(variables.get(name, {}).get("type") == "query",
                       f"dashboard: no ${name} query variable")
    for variable in variables.values():
        if variable.get("type") == "query":
            failures.check(variable.get("datasource", {}).get("uid") == ds_uid,
                           f"dashboard: variable ${variable.get('name')} does not use {ds_uid}")
            failures.check(LABEL_VALUES.match(variable_query(variable)),
                           f"dashboard: variable ${variable.get('name')} is not label_values(SELECTOR, LABEL)")
    ids = set()
    for panel in all_panels(dashboard):
        title = panel.get("title")
        failures.check(panel.get("id") not in ids, f"dashboard: panel id {panel.get('id')} repeated")
        ids.add(panel.get("id"))
        grid = panel.get("gridPos", {})
        failures.check(all(isinstance(grid.get(k), int) for k in "hwxy") and grid["x"] + grid["w"] <= 24,
                       f"dashboard: panel {title!r} has no valid gridPos")
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets", [])
        failures.check(targets, f"dashboard: panel {title!r} has no target")
        failures.check(panel.get("datasource", {}).get("uid") == ds_uid,
                       f"dashboard: panel {title!r} does not use {ds_uid}")
        refs = [t.get("refId") for t in targets]
        failures.check(len(set(refs)) == len(refs) and all(refs), f"dashboard: panel {title!r} has bad refIds {refs}")
        for target in targets:
            expr = target.get("expr", "")
            failures.check(expr.strip(), f"dashboard: panel {title!r} target {target.get('refId')} has no expr")
            failures.check(target.get("datasource", {}).get("uid") == ds_uid,
                           f"dashboard: panel {title!r} target {target.get('refId')} does not use {ds_uid}")
            for match in VARIABLE.finditer(expr):
                name = match.group(1) or match.group(2)
                failures.check(name in variables or name in GRAFANA_BUILTINS,
                               f"dashboard: panel {title!r} uses undefined variable ${name}")


def fill_variables(expr):
    """A Grafana query as plain PromQL: intervals for the interval macros,
    a regex matching anything for the template variables (which must sit
    inside a quoted matcher value, or the result will not parse)."""
    def value(match):
        name = match.group(1) or match.group(2)
        return "1m" if name in GRAFANA_BUILTINS else ".+"
    return VARIABLE.sub(value, expr)


def check_rules(repo, rules, failures):
    alerts = {}
    for group in rules.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert")
            if not failures.check(name, f"rules: a rule without alert in group {group.get('name')}"):
                continue
            alerts[name] = rule
            failures.check(rule.get("for"), f"rules: {name} has no for:")
            failures.check(rule.get("labels", {}).get("severity") in SEVERITIES,
                           f"rules: {name} severity is not one of {sorted(SEVERITIES)}")
            annotations = rule.get("annotations", {})
            for key in ("summary", "description", "runbook"):
                failures.check(annotations.get(key, "").strip(), f"rules: {name} has no {key} annotation")
            runbook = annotations.get("runbook", "")
            path, _, anchor = runbook.partition("#")
            target = os.path.join(repo, path)
            if failures.check(path and os.path.isfile(target), f"rules: {name} runbook {runbook!r}: no such file"):
                failures.check(anchor in heading_anchors(target),
                               f"rules: {name} runbook {runbook!r}: no heading with that anchor")
    return alerts


def promtool(args, failures, what):
    result = subprocess.run(["promtool"] + args, capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip()
    print(f"$ promtool {' '.join(args)}\n{output}\n")
    failures.check(result.returncode == 0, f"{what}: promtool exited {result.returncode}")
    return result


def run_rules(repo):
    failures = Failures()
    if not shutil.which("promtool"):
        print("FAIL: promtool is not installed (tools/install-deps.sh installs Debian's prometheus package)")
        return FAIL
    check_extractor(failures)
    dashboard, rules = load(repo)
    check_dashboard(dashboard, failures)
    alerts = check_rules(repo, rules, failures)
    failures.check(alerts, "rules: no alert")

    promtool(["check", "rules", os.path.join(repo, RULES)], failures, "promtool check rules")
    # promtool resolves rule_files against the test file's directory.
    promtool(["test", "rules", os.path.join(repo, RULE_TESTS)], failures, "promtool test rules")
    with open(os.path.join(repo, RULE_TESTS)) as f:
        rule_tests = yaml.safe_load(f)
    fired = {case["alertname"] for test in rule_tests.get("tests", [])
             for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    for name in alerts:
        failures.check(name in fired, f"{RULE_TESTS}: no test makes {name} fire")

    # Every dashboard query through Prometheus' own parser, as a recording
    # rule.
    exprs, _ = queries(dashboard, rules)
    recording = [{"record": f"ops_test:query_{n}", "expr": fill_variables(expr)}
                 for n, (where, expr) in enumerate(exprs) if not where.startswith("rule ")]
    with tempfile.TemporaryDirectory(prefix="ops_test.") as tmp:
        path = os.path.join(tmp, "dashboard-queries.yml")
        with open(path, "w") as f:
            yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recording}]}, f, width=10000)
        result = promtool(["check", "rules", path], failures, "the dashboard's queries")
        if result.returncode != 0:
            for n, (where, expr) in enumerate(e for e in exprs if not e[0].startswith("rule ")):
                if f"query_{n}" in result.stdout + result.stderr:
                    print(f"  ops_test:query_{n} is {where}: {expr}")
    for where, expr in exprs:
        try:
            selectors(expr)
        except (ValueError, IndexError) as error:
            failures.check(False, f"{where}: {error}")
    return failures.report()


# ---------------------------------------------------------------------------
# A real /metrics.

SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+\S+(?:\s+\S+)?$")
LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text):
    """{sample name: {label: {values}}} of Prometheus' text format."""
    series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        if not match:
            raise ValueError(f"not a sample line: {line!r}")
        labels = series.setdefault(match.group("name"), {})
        for label, value in LABEL.findall(match.group("labels") or ""):
            labels.setdefault(label, set()).add(value)
    return series


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def wait_for(condition, timeout, what):
    """Polls `condition`: /metrics and child logs cannot notify us."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def literal_values(op, value):
    """The values a matcher names, if it is a literal or an alternation of
    literals (not a template variable, not a real regex)."""
    if "$" in value:
        return []
    if op in ("=", "!="):
        return [value]
    if re.fullmatch(r"[A-Za-z0-9_]+(?:\|[A-Za-z0-9_]+)*", value):
        return value.split("|")
    return []


def check_against_scrape(repo, series, wanted, failures, what):
    """Every metric of the dashboard and the rules that `wanted(metric)`
    selects is in `series`, with the labels and literal values matched on."""
    dashboard, rules = load(repo)
    exprs, listed = queries(dashboard, rules)
    checked = set()
    for where, expr in exprs:
        for metric, matchers in selectors(expr):
            if metric in PROMETHEUS_MADE or not wanted(metric):
                continue
            checked.add(metric)
            if not failures.check(metric in series, f"{where}: {metric} is not in {what}'s /metrics"):
                continue
            for label, op, value in matchers:
                if label in TARGET_LABELS:
                    continue
                values = series[metric].get(label)
                if not failures.check(values is not None, f"{where}: {metric} has no label {label}"):
                    continue
                for v in literal_values(op, value):
                    failures.check(v in values, f"{where}: no {metric}{{{label}=\"{v}\"}} "
                                                f"after the traffic (has {sorted(values)})")
    for where, metric, label in listed:
        if wanted(metric) and metric in series:
            failures.check(label in TARGET_LABELS or label in series[metric],
                           f"{where}: {metric} has no label {label}")
    failures.check(checked, f"no metric of {what} is queried at all")
    print(f"{what}: checked {len(checked)} metrics: {', '.join(sorted(checked))}")


def is_rest_metric(metric):
    return metric.startswith("presence_rest_")


class Child:
    """A server child with its stderr in a file, stopped by its pid."""

    def __init__(self, argv, log_path):
        self.argv, self.log_path = argv, log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, pattern, timeout=60):
        def found():
            if self.process.poll() is not None:
                raise AssertionError(f"{self.argv[0]} exited {self.process.returncode}:\n{self.log()}")
            match = re.search(pattern, self.log())
            return match and match.group(1)
        return wait_for(found, timeout, f"{pattern!r} in {self.argv[0]}'s log")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_presenced(binary, tmp, metrics):
    argv = [binary, "--listen=127.0.0.1:0", "--db=" + os.path.join(tmp, "presence.db")]
    if metrics:
        argv.append("--metrics_listen=127.0.0.1:0")
    child = Child(argv, os.path.join(tmp, "presenced.log"))
    child.metrics = child.wait_log(r"metrics on (http://127\.0\.0\.1:[0-9]+/metrics)") if metrics else None
    child.address = child.wait_log(r"serving on (127\.0\.0\.1:[0-9]+)")
    return child


# Raw protobuf, so that the test needs no generated stubs.
def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, value):
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def heartbeat_request(user_id, session="tab-1"):
    return field(1, user_id) + field(2, session)


def run_presenced(repo, binary):
    import grpc  # python3-grpcio; only this part needs it

    failures = Failures()
    service = "/presence.v1.PresenceService/"
    with tempfile.TemporaryDirectory(prefix="ops_test.") as tmp:
        server = start_presenced(binary, tmp, metrics=True)
        channel = grpc.insecure_channel(server.address)
        watchers = []
        try:
            def unary(method, request):
                try:
                    channel.unary_unary(service + method)(request, timeout=10)
                    return grpc.StatusCode.OK
                except grpc.RpcError as error:
                    return error.code()

            for user in range(1, 6):
                failures.check(unary("Heartbeat", heartbeat_request(user)) == grpc.StatusCode.OK,
                               f"Heartbeat of user {user} failed")
            batch = field(1, heartbeat_request(6)) + field(1, heartbeat_request(7))
            failures.check(unary("BatchHeartbeat", batch) == grpc.StatusCode.OK, "BatchHeartbeat failed")
            # Two watchers of everyone, each past its snapshot; one leaves.
            for _ in range(2):
                stream = channel.unary_stream(service + "WatchPresence")(field(2, 1), timeout=60)
                next(stream)
                watchers.append(stream)
            watchers.pop().cancel()
            failures.check(unary("MarkOffline", field(1, 1)) == grpc.StatusCode.OK, "MarkOffline failed")
            failures.check(unary("ListOnline", b"") == grpc.StatusCode.OK, "ListOnline failed")
            failures.check(unary("GetPresence", field(1, varint(2))) == grpc.StatusCode.OK, "GetPresence failed")
            failures.check(unary("Heartbeat", heartbeat_request(0)) == grpc.StatusCode.INVALID_ARGUMENT,
                           "a Heartbeat of user 0 was not refused INVALID_ARGUMENT")

            def left():
                series = parse_exposition(scrape(server.metrics))
                codes = series.get("presence_grpc_requests_total", {}).get("code", set())
                return "CANCELLED" in codes and series
            wait_for(left, 30, "the cancelled watch to be counted")

            # The database deleted under presenced: changes are refused
            # UNAVAILABLE (docs/operations.md#storage-faults), what
            # PresencedNotServing looks for.
            for name in os.listdir(tmp):
                if name.startswith("presence.db") and not name.endswith(".lock"):
                    os.remove(os.path.join(tmp, name))
            wait_for(lambda: unary("Heartbeat", heartbeat_request(2)) == grpc.StatusCode.UNAVAILABLE,
                     30, "changes to be refused UNAVAILABLE once the database is gone")
            failures.check(unary("MarkOffline", field(1, 2)) == grpc.StatusCode.UNAVAILABLE,
                           "a MarkOffline was not refused UNAVAILABLE without a database")

            text = scrape(server.metrics)
            series = parse_exposition(text)
            check_against_scrape(repo, series, lambda m: not is_rest_metric(m), failures, "presenced")
        finally:
            for stream in watchers:
                stream.cancel()
            channel.close()
            server.stop()  # exits 1 without its database, as documented
    return failures.report()


# ---------------------------------------------------------------------------
# presence-rest.

SECRET = b"ops-test-secret-0123456789abcdef"


def jwt(user_id):
    def b64(data):
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps({"token_type": "access", "user_id": user_id,
                              "exp": int(time.time()) + 300}).encode())
    signature = hmac.new(SECRET, f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}.{payload}.{b64(signature.digest())}"


def http(method, url, token=None):
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token:
        request.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_presence_rest(repo, presenced, presence_rest):
    failures = Failures()
    with tempfile.TemporaryDirectory(prefix="ops_test.") as tmp:
        secret = os.path.join(tmp, "jwt_secret")
        with open(secret, "wb") as f:
            f.write(SECRET)
        server = start_presenced(presenced, tmp, metrics=False)
        metrics = f"http://127.0.0.1:{free_port()}/metrics"
        rest = Child([presence_rest, "--listen=127.0.0.1:0", "--server=" + server.address,
                      "--jwt_secret_file=" + secret,
                      "--metrics_listen=" + metrics.split("/")[2]], os.path.join(tmp, "presence-rest.log"))
        stream = None
        try:
            base = "http://" + rest.wait_log(r"serving on ([0-9.]+:[0-9]+)")
            failures.check(http("POST", base + "/api/chat/heartbeat/", jwt(5)) == 200, "REST heartbeat failed")
            failures.check(http("GET", base + "/api/chat/online-users/", jwt(5)) == 200, "REST online-users failed")
            failures.check(http("GET", base + "/api/chat/online-users/") == 401, "a request without a token was not 401")
            # A browser's event stream, past its snapshot.
            stream = urllib.request.urlopen(f"{base}/api/chat/presence/stream?access_token={jwt(6)}", timeout=30)
            while not stream.readline().startswith(b"event: snapshot"):
                pass

            def ready():
                if rest.process.poll() is not None:
                    raise AssertionError(f"presence-rest exited:\n{rest.log()}")
                try:
                    series = parse_exposition(scrape(metrics))
                except (urllib.error.URLError, ConnectionError):
                    return None
                return "presence_rest_event_streams" in series and series
            series = wait_for(ready, 30, f"{metrics} to answer")
            check_against_scrape(repo, series, is_rest_metric, failures, "presence-rest")
        finally:
            if stream is not None:
                stream.close()
            rest.stop()
            server.stop()
    return failures.report()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["rules", "presenced", "presence-rest"])
    parser.add_argument("--repo", required=True)
    parser.add_argument("--presenced")
    parser.add_argument("--presence_rest")
    args = parser.parse_args()
    if args.part == "rules":
        return run_rules(args.repo)
    if args.part == "presenced":
        return run_presenced(args.repo, args.presenced)
    return run_presence_rest(args.repo, args.presenced, args.presence_rest)


if __name__ == "__main__":
    sys.exit(main())
