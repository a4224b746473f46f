"""The monitoring we ship beside the filter, read: the Prometheus alert rules
(envoy/prometheus/keygate-rules.yaml), the Grafana dashboard (envoy/grafana/keygate.json) and
its queries, and which metrics a PromQL expression reads. The repository checks look at the
files; the end-to-end tests hold them against what a real Envoy exports."""
import json
import re

import yaml

from .paths import ROOT

DASHBOARD = ROOT / "envoy/grafana/keygate.json"
RULES = ROOT / "envoy/prometheus/keygate-rules.yaml"
RULE_TESTS = ROOT / "envoy/prometheus/keygate-rules.test.yaml"
# What Grafana puts in for its own variables when we run the queries ourselves: a range that
# holds a few samples at the test's 1 s scrape interval.
GRAFANA_BUILTINS = {"__rate_interval": "10s", "__interval": "10s", "__range": "1m"}


PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "inf", "nan",
}


def promql_metrics(expr, exported):
    """The metric names a PromQL expression reads: bare names (`x`, `x{…}`, `rate(x[5m])`) and
    `{__name__=~"…"}` selectors, the latter matched against `exported`."""
    names = set()
    for pattern in re.findall(r'__name__\s*=~\s*"([^"]*)"', expr):
        matched = {name for name in exported if re.fullmatch(pattern, name)}
        assert matched, f"{expr}: __name__=~{pattern!r} matches no metric Envoy exports"
        names |= matched
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group()
        before = text[match.start() - 1] if match.start() else " "
        if word.lower() in PROMQL_WORDS or before.isdigit() or before == "." or text[match.end() :].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def fill_grafana_variables(expr, variables):
    """`expr` as Prometheus gets it from Grafana with every variable at its "All" value."""

    def value(match):
        name = match.group(1) or match.group(2)
        assert name in variables, f"{expr}: ${name} is not a variable of the dashboard"
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def rules():
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def dashboard():
    return json.loads(DASHBOARD.read_text())


def all_panels(panels):
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def query_panels():
    return [panel for panel in all_panels(dashboard()["panels"]) if panel["type"] != "row"]


def dashboard_variables():
    """Every variable an expression may use, at the value Grafana gives it for "All"."""
    values = dict(GRAFANA_BUILTINS)
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["includeAll"] and variable["allValue"] == ".*", variable
            values[variable["name"]] = variable["allValue"]
    return values


def variable_query(variable):
    query = variable["query"]
    return query["query"] if isinstance(query, dict) else query


def dashboard_queries():
    """(where, PromQL) for every panel target and every query variable."""
    queries = []
    for panel in query_panels():
        for target in panel["targets"]:
            queries.append((f"panel {panel['title']!r} target {target['refId']}", target["expr"]))
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable_query(variable))
            assert match, variable
            queries.append((f"variable {variable['name']}", f"count by ({match.group(2)}) ({match.group(1)})"))
    return queries
