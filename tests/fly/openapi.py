"""Play the Machines API from Fly's OpenAPI document, checking every request the client sends.

`FlyAPI` is an ``httpx.MockTransport`` handler. For each request it finds the operation (path
template and method), then checks: required path, query and header parameters are there; every
query parameter is declared and its value fits the parameter's schema; a JSON body is declared,
validates against the operation's ``requestBody`` schema (``$ref`` resolved with ``referencing``,
OpenAPI 3.0 ``nullable`` understood) and carries no top-level field the schema does not name; and
the bearer token is sent. A request that breaks the spec raises `SpecViolation` (an
``AssertionError``) out of the client call, so the test fails where the client went wrong.

Where Fly's real behaviour differs from its document, `DEVIATIONS` lists it, with the reason, and
the schema is widened for exactly that.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry
from referencing.jsonschema import DRAFT4

__all__ = [
    "DEVIATIONS",
    "SPEC_PATH",
    "FlyAPI",
    "Operation",
    "Recorded",
    "SpecViolation",
    "json_response",
]

# CI runs with a copy of shared/ beside the clone, so this path works there too.
SPEC_PATH = Path(__file__).resolve().parents[1] / "ref" / "fly-machines-openapi.json"
_SPEC_URI = "urn:fly-machines-openapi"

DEVIATIONS: Mapping[str, str] = {
    "updateMetadataRequest.metadata": (
        "Fly deletes a key sent as null in PATCH .../metadata (fly-notes.md §1, Metadata); the "
        "spec types the values as plain strings."
    ),
}


# Query parameters Fly takes that the document does not declare, sent as fly-go sends them
# (flaps_machines.go): the lease TTL as ``?ttl=`` (the document has it only in the body) and
# destroy's ``kill=true`` (the document names only ``force``). Fly is the reference where the
# two disagree; every other undeclared parameter is still refused.
FLY_GO_QUERY: dict[str, dict[str, dict[str, Any]]] = {
    "Machines_create_lease": {"ttl": {"name": "ttl", "in": "query", "schema": {"type": "integer"}}},
    "Machines_delete": {"kill": {"name": "kill", "in": "query", "schema": {"type": "boolean"}}},
}


class SpecViolation(AssertionError):
    """A request the OpenAPI document does not allow."""


@dataclass(frozen=True)
class Operation:
    """One operation of the document."""

    method: str
    template: str
    operation_id: str
    parameters: tuple[Mapping[str, Any], ...]
    request_body: Mapping[str, Any] | None
    pattern: re.Pattern[str]
    literal_segments: int


@dataclass
class Recorded:
    """A request that passed the checks, with what the handler read from it."""

    request: httpx.Request
    operation: Operation
    path_params: dict[str, str]
    query: list[tuple[str, str]]
    body: Any

    @property
    def operation_id(self) -> str:
        return self.operation.operation_id

    @property
    def headers(self) -> httpx.Headers:
        return self.request.headers

    def query_value(self, name: str) -> str | None:
        values = [v for k, v in self.query if k == name]
        return values[-1] if values else None


Responder = (
    httpx.Response
    | BaseException
    | Callable[[Recorded], httpx.Response | Awaitable[httpx.Response]]
)


def json_response(status: int = 200, body: Any = None, **headers: str) -> httpx.Response:
    """Build a JSON response (``body=None`` → an empty body)."""
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    if body is None:
        return httpx.Response(status, headers=hdrs)
    return httpx.Response(status, json=body, headers=hdrs)


class _Spec:
    """The document, loaded once: operations and a registry for ``$ref``."""

    def __init__(self, path: Path) -> None:
        doc = _with_nullable(json.loads(path.read_text(encoding="utf-8")))
        meta = doc["components"]["schemas"]["updateMetadataRequest"]["properties"]["metadata"]
        meta["additionalProperties"] = {"type": ["string", "null"]}
        self.doc = doc
        self.registry: Registry[Any] = Registry().with_resource(
            _SPEC_URI, DRAFT4.create_resource(doc)
        )
        self.operations: list[Operation] = []
        for template, item in doc["paths"].items():
            shared = tuple(item.get("parameters", ()))
            for method, op in item.items():
                if method == "parameters":
                    continue
                regex = "^" + re.sub(r"\\\{([^}]+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
                self.operations.append(
                    Operation(
                        method=method.upper(),
                        template=template,
                        operation_id=op["operationId"],
                        parameters=shared + tuple(op.get("parameters", ())),
                        request_body=op.get("requestBody"),
                        pattern=re.compile(regex + "$"),
                        literal_segments=sum(
                            1 for s in template.split("/") if s and not s.startswith("{")
                        ),
                    )
                )
        # Literal segments win over templated ones (".../metadata" over ".../{machine_id}").
        self.operations.sort(key=lambda o: -o.literal_segments)
        self.by_id = {o.operation_id: o for o in self.operations}

    def validator(self, schema: Mapping[str, Any]) -> Draft4Validator:
        return Draft4Validator(_relocate(schema), registry=self.registry)

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        """Follow ``$ref`` (and a single-element ``allOf``) to the schema it names."""
        while True:
            if "$ref" in schema:
                ref = schema["$ref"]
                uri = _SPEC_URI + ref if ref.startswith("#") else ref
                schema = self.registry.resolver().lookup(uri).contents
            elif list(schema.get("allOf", ())) and len(schema["allOf"]) == 1:
                schema = schema["allOf"][0]
            else:
                return schema


@functools.cache
def _load(path: Path) -> _Spec:
    return _Spec(path)


def _relocate(schema: Mapping[str, Any]) -> dict[str, Any]:
    """Make ``#/...`` refs absolute, so a schema taken out of the document still resolves."""
    text = json.dumps(schema).replace('"$ref": "#/', f'"$ref": "{_SPEC_URI}#/')
    return dict(json.loads(text))


def _with_nullable(node: Any) -> Any:
    """Turn OpenAPI 3.0 ``nullable: true`` into JSON Schema's ``null`` type."""
    if isinstance(node, list):
        return [_with_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _with_nullable(v) for k, v in node.items()}
    if out.pop("nullable", False) is True:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


class FlyAPI:
    """An ``httpx.MockTransport`` handler that answers from registered responders.

    ``on(operation_id, *responders)`` queues answers for an operation; the last one repeats. A
    responder is an ``httpx.Response``, an exception to raise (an httpx transport error), or a
    function (sync or async) of the `Recorded` request.
    """

    def __init__(self, spec_path: Path = SPEC_PATH) -> None:
        self.spec = _load(spec_path)
        self.calls: list[Recorded] = []
        self._responders: dict[str, list[Responder]] = {}

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)  # type: ignore[arg-type]  # sync or async, per answer

    def on(self, operation_id: str, *responders: Responder) -> None:
        if operation_id not in self.spec.by_id:
            raise KeyError(f"no operation {operation_id!r} in the document")
        if not responders:
            raise ValueError("give at least one responder")
        self._responders[operation_id] = list(responders)

    def calls_to(self, operation_id: str) -> list[Recorded]:
        return [c for c in self.calls if c.operation_id == operation_id]

    def __iter__(self) -> Iterator[Recorded]:
        return iter(self.calls)

    def __call__(self, request: httpx.Request) -> httpx.Response | Awaitable[httpx.Response]:
        recorded = self.check(request)
        self.calls.append(recorded)
        queue = self._responders.get(recorded.operation_id)
        if not queue:
            raise SpecViolation(f"the test registered no answer for {recorded.operation_id}")
        responder = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(responder, BaseException):
            raise responder
        if isinstance(responder, httpx.Response):
            return _fresh(responder)
        result = responder(recorded)
        if inspect.isawaitable(result):
            return _await_fresh(result)
        return _fresh(result)

    # -- the checks -------------------------------------------------------------------------

    def check(self, request: httpx.Request) -> Recorded:
        """Check one request against the document; return what was read from it."""
        path = request.url.path
        where = f"{request.method} {path}"
        matches = [o for o in self.spec.operations if o.pattern.match(path)]
        if not matches:
            raise SpecViolation(f"{where}: no such path in the document")
        op = next((o for o in matches if o.method == request.method), None)
        if op is None:
            allowed = sorted({o.method for o in matches})
            raise SpecViolation(f"{where}: method not allowed (document has {allowed})")
        match = op.pattern.match(path)
        assert match is not None
        path_params = {k: v for k, v in match.groupdict().items()}
        where = f"{request.method} {op.template} ({op.operation_id})"

        auth = request.headers.get("authorization", "")
        if not (auth.startswith("Bearer ") or auth.startswith("FlyV1 ")) or len(auth) < 10:
            raise SpecViolation(f"{where}: no bearer token in Authorization")

        query = list(request.url.params.multi_items())
        declared = {p["name"]: p for p in op.parameters if p["in"] == "query"}
        declared.update(FLY_GO_QUERY.get(op.operation_id, {}))
        templated = [
            (re.compile("^" + re.escape(n).replace(r"\{key\}", ".+") + "$"), p)
            for n, p in declared.items()
            if "{" in n
        ]
        seen: set[str] = set()
        for name, value in query:
            param = declared.get(name)
            if param is None:
                param = next((p for rx, p in templated if rx.match(name)), None)
                if param is None:
                    raise SpecViolation(f"{where}: query parameter {name!r} is not declared")
            elif name in seen:
                raise SpecViolation(f"{where}: query parameter {name!r} sent twice")
            seen.add(name)
            self._check_value(where, f"query parameter {name!r}", param, value)

        for param in op.parameters:
            if not param.get("required"):
                continue
            name, place = param["name"], param["in"]
            if place == "path" and not path_params.get(name):
                raise SpecViolation(f"{where}: path parameter {name!r} is empty")
            if place == "query" and name not in seen:
                raise SpecViolation(f"{where}: required query parameter {name!r} missing")
            if place == "header" and not request.headers.get(name):
                raise SpecViolation(f"{where}: required header {name!r} missing")
        for param in op.parameters:
            if param["in"] == "header" and request.headers.get(param["name"]) is not None:
                self._check_value(
                    where, f"header {param['name']!r}", param, request.headers[param["name"]]
                )

        body = self._check_body(where, op, request)
        return Recorded(
            request=request, operation=op, path_params=path_params, query=query, body=body
        )

    def _check_value(self, where: str, what: str, param: Mapping[str, Any], raw: str) -> None:
        schema = param.get("schema", {})
        kind = self.spec.resolve(schema).get("type", "string")
        value: Any = raw
        try:
            if kind == "integer":
                value = int(raw)
            elif kind == "number":
                value = float(raw)
            elif kind == "boolean":
                if raw not in ("true", "false"):
                    raise ValueError(raw)
                value = raw == "true"
        except ValueError:
            raise SpecViolation(f"{where}: {what}={raw!r} is not a valid {kind}") from None
        try:
            self.spec.validator(schema).validate(value)
        except ValidationError as exc:
            raise SpecViolation(f"{where}: {what}={raw!r}: {exc.message}") from None

    def _check_body(self, where: str, op: Operation, request: httpx.Request) -> Any:
        content = request.content
        spec_body = op.request_body
        if not content:
            if spec_body is not None and spec_body.get("required"):
                raise SpecViolation(f"{where}: a request body is required")
            return None
        if spec_body is None:
            raise SpecViolation(f"{where}: sends a body the operation does not take")
        ctype = request.headers.get("content-type", "").split(";")[0].strip()
        media = spec_body.get("content", {})
        if ctype not in media:
            raise SpecViolation(f"{where}: content-type {ctype!r}, document has {sorted(media)}")
        try:
            body = json.loads(content)
        except ValueError:
            raise SpecViolation(f"{where}: body is not JSON") from None
        schema = media[ctype].get("schema", {})
        errors = sorted(self.spec.validator(schema).iter_errors(body), key=lambda e: e.path)
        if errors:
            first = errors[0]
            at = "/".join(str(p) for p in first.absolute_path) or "(body)"
            raise SpecViolation(f"{where}: body at {at}: {first.message}")
        resolved = self.spec.resolve(schema)
        known = resolved.get("properties")
        if isinstance(body, dict) and isinstance(known, Mapping):
            extra = sorted(set(body) - set(known))
            if extra:
                raise SpecViolation(f"{where}: body fields {extra} are not in the schema")
        return body


def _fresh(response: httpx.Response) -> httpx.Response:
    """Copy a canned response, so one registered answer can be served several times."""
    return httpx.Response(response.status_code, headers=response.headers, content=response.content)


async def _await_fresh(result: Awaitable[httpx.Response]) -> httpx.Response:
    return _fresh(await result)
