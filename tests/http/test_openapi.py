"""The OpenAPI document matches the routes, and a fuzz run over it finds no 5xx."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from starlette.routing import Route

from kmsframe.http import build_app
from kmsframe.http.routing import KmsRoute

from kmsframe.http.access import PUBLIC_PATHS

from .conftest import ROOT_TOKEN, KmsServer


def _served_routes() -> set[tuple[str, str]]:
    """(method, path) of every route the app really has (no deployment needed)."""
    app = build_app(lambda: None)  # type: ignore[arg-type, return-value]
    out = set()
    for route in app.starlette.routes:
        assert isinstance(route, KmsRoute), f"{route} is not a KmsRoute (no permission/doc)"
        assert isinstance(route, Route)
        path = re.sub(r"{([^}:]+):[^}]+}", r"{\1}", route.path)
        out |= {(m, path) for m in route.methods or () if m != "HEAD"}
    return out


def test_document_lists_exactly_the_routes(client: httpx.Client) -> None:
    doc = client.get("/v1/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == _served_routes()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["summary"] and op["operationId"], (method, path)
            assert "default" in op["responses"]
            if path in PUBLIC_PATHS:
                assert op["security"] == []
            else:
                assert op["x-permission"], (method, path)
            for name in re.findall(r"{(\w+)}", path):
                assert name in [p["name"] for p in op["parameters"]]


def test_every_documented_route_answers(client: httpx.Client) -> None:
    """The other direction through the server: no documented path is a 404 route miss."""
    doc = client.get("/v1/openapi.json").json()
    for path, ops in doc["paths"].items():
        concrete = path.replace("{name}", "absent").replace("{version}", "10001") \
            .replace("{app_id}", "absent")
        for method in ops:
            r = client.request(method.upper(), concrete, json={})
            body = r.json() if r.headers["content-type"] == "application/json" else {}
            assert body.get("error", {}).get("code") not in ("route_not_found",
                                                             "method_not_allowed"), path


def test_all_refs_resolve(client: httpx.Client) -> None:
    doc = client.get("/v1/openapi.json").json()
    refs = set(re.findall(r'"\$ref": "#/components/schemas/(\w+)"', json.dumps(doc)))
    assert refs <= set(doc["components"]["schemas"])


@pytest.mark.slow
def test_schemathesis_finds_no_server_errors(server: KmsServer, client: httpx.Client,
                                             tmp_path: Path) -> None:
    client.post("/v1/keys", json={"name": "0"})  # so some fuzzed names exist
    schema = tmp_path / "openapi.json"
    schema.write_bytes(client.get("/v1/openapi.json").content)
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", str(schema), "--url", server.url,
         "-H", f"Authorization: Bearer {ROOT_TOKEN}",
         "--checks", "not_a_server_error,response_schema_conformance",
         "--max-examples", "50", "--seed", "20261204", "--request-timeout", "10",
         "--phases", "examples,coverage,fuzzing,stateful", "--no-color"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)  # its cache dir goes there
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "passed" in result.stdout
    assert "Traceback" not in server.log()
