"""The control service's API is described three times and they agree: docs/control-api.md's
endpoint headings and control/openapi.json list the same operations, and control/access.json
(the Rust table every admin route is built from; a Rust test keeps the file in sync) has a rule
for every admin operation of the document. That the service serves the document and routes
every operation in it is tests/control/test_docs.py."""

import json
import re

from keygate_testkit.paths import ROOT
from keygate_testkit.shipped import openapi_document, openapi_operations

PUBLIC_OR_SYNC = {("get", "/healthz"), ("get", "/metrics"), ("get", "/openapi.json"), ("get", "/v1/snapshot"),
                  ("get", "/v1/snapshot/polls"), ("post", "/v1/usage"),
                  ("post", "/v1/ratelimits/sync"), ("post", "/v1/secret-scanning/github"),
                  ("post", "/oauth/token"), ("get", "/.well-known/jwks.json"),
                  ("get", "/.well-known/oauth-authorization-server"), ("post", "/v1/proxies/enroll")}


def documented_operations():
    text = (ROOT / "docs" / "control-api.md").read_text()
    return {(method.lower(), path) for method, path in
            re.findall(r"^#{2,4} `?(GET|POST|PUT|PATCH|DELETE) (/[^\s`]*)`?\s*$", text, re.MULTILINE)}


def test_docs_and_openapi_list_the_same_operations():
    document = openapi_document()
    documented = documented_operations()
    assert len(documented) >= 9
    assert documented == openapi_operations(document)


def test_access_table_covers_every_admin_operation_of_the_document():
    access = json.loads((ROOT / "control" / "access.json").read_text())
    operations = openapi_operations(openapi_document())
    table = {(rule["method"].lower(), rule["path"]) for rule in access}
    assert operations - PUBLIC_OR_SYNC == table
