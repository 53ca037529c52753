"""`inferlab bench fuzz`: property-based fuzzing of the server's HTTP API.

Request bodies are drawn from the server's own OpenAPI description (GET /openapi.json):
each body takes a random subset of a route's fields, each with a value valid for its schema,
at its edges, or arbitrary JSON, plus unknown fields, raw bytes, NaN/Infinity literals,
assorted Content-Types and charsets, extra headers and padded sizes past the body limit.
Each answer must be a 2xx (JSON, or an SSE stream ending in [DONE]) or a JSON 4xx whose
`error.param` names the field at fault. After the run the server must be live and ready and
give the same greedy tokens as before. The tests run a bounded version
(tests/serving/test_fuzz.py); this command runs a long one against a real `inferlab serve`.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import time
import urllib.parse
from dataclasses import dataclass, field

ROUTES = ("/v1/completions", "/v1/chat/completions")
FIELD_STATUSES = (400, 404, 413, 415, 429)
GREEDY = {"prompt": [10, 20, 30], "max_tokens": 8, "temperature": 0, "ignore_eos": True}


@dataclass(frozen=True)
class FuzzRequest:
    path: str
    body: bytes
    headers: dict = field(default_factory=dict)


def _value(schema: dict):
    """A strategy for values of `schema`: valid ones, edge ones, and arbitrary JSON."""
    from hypothesis import strategies as st

    junk = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                   max_size=3), max_leaves=6)
    options = []
    kind = schema.get("type")
    if "enum" in schema:
        options.append(st.sampled_from(schema["enum"]))
    if "oneOf" in schema:
        options += [_value(s) for s in schema["oneOf"]]
    if kind == "integer":
        lo = schema.get("minimum", -3)
        options += [st.integers(lo - 2, lo + 40), st.sampled_from([2**63, 2**63 - 1, -2**63, 10**30])]
    elif kind == "number":
        options += [st.floats(-1, 3), st.sampled_from([float("nan"), float("inf"), -0.0, 1e-300])]
    elif kind == "string":
        options.append(st.text(max_size=24))
    elif kind == "boolean":
        options.append(st.booleans())
    elif kind == "array":
        options.append(st.lists(_value(schema.get("items", {})), max_size=4))
    elif kind == "object" and "properties" in schema:
        props = schema["properties"]
        options.append(st.fixed_dictionaries({}, optional={k: _value(v) for k, v in props.items()}))
    if schema.get("nullable"):
        options.append(st.none())
    return _weighted([(1, junk), (6, st.one_of(options or [junk]))])


def _weighted(choices: list):
    """One of several strategies, drawn with the given integer weights."""
    from hypothesis import strategies as st

    table = [s for w, s in choices for _ in range(w)]
    return st.integers(0, len(table) - 1).flatmap(lambda i: table[i])


_PLAUSIBLE: dict = {}


def _plausible(path: str) -> dict:
    """A well-formed request's required field, and (in _PLAUSIBLE) sampling fields in their ranges."""
    from hypothesis import strategies as st

    _PLAUSIBLE.update(max_tokens=st.integers(1, 24), temperature=st.floats(0, 2), top_p=st.floats(0.05, 1),
                      top_k=st.integers(-1, 40), seed=st.integers(0, 2**63 - 1), stream=st.booleans(),
                      stop=st.lists(st.text(min_size=1, max_size=3), max_size=2), ignore_eos=st.booleans())
    if path.endswith("chat/completions"):
        message = st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                                         "content": st.text(max_size=20)})
        return {"messages": st.lists(message, min_size=1, max_size=3)}
    return {"prompt": st.text(min_size=1, max_size=20) | st.lists(st.integers(0, 255), min_size=1, max_size=20)}


def request_strategy(openapi: dict):
    """Strategy for `FuzzRequest`s against the routes `openapi` describes."""
    from hypothesis import strategies as st

    def route(path: str):
        schema = openapi["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        fields = {k: _value(v) for k, v in schema["properties"].items()}
        required = {k: fields[k] for k in schema["required"]}
        optional = {k: v for k, v in fields.items() if k not in required}
        body = _weighted([(1, st.fixed_dictionaries({}, optional={**required, **optional})),
                          (2, st.fixed_dictionaries(required, optional=optional)),
                          (4, st.fixed_dictionaries(_plausible(path), optional=_PLAUSIBLE))])
        extra = st.dictionaries(st.text(min_size=1, max_size=8), st.integers(), max_size=1)
        obj = st.tuples(body, extra, st.booleans()).map(lambda t: {**t[0], **(t[1] if t[2] else {})})
        raw = obj.map(lambda o: json.dumps(o, allow_nan=True).encode())
        raw = _weighted([(16, raw), (1, st.binary(max_size=40)), (1, st.just(b"[" * 50_000)),
                         (1, raw.map(lambda b: b + b" " * 1_100_000))])
        return st.tuples(st.just(path), raw)

    content_types = _weighted([(4, st.sampled_from([None, "application/json"])), (1, st.sampled_from([
                                     "application/json; charset=utf-8",
                                     "application/json; charset=latin-1", "application/json; charset=utf-16",
                                     "application/json; charset=klingon", "text/plain", "application/x-www-form-urlencoded",
                                     "application/vnd.api+json", "multipart/form-data; boundary=x"]))])
    headers = st.dictionaries(st.from_regex(r"X-[A-Za-z0-9-]{1,12}", fullmatch=True),
                              st.from_regex(r"[ -~]{0,40}", fullmatch=True), max_size=3)
    return st.tuples(st.one_of([route(p) for p in ROUTES]), content_types, headers).map(
        lambda t: FuzzRequest(t[0][0], t[0][1], {**t[2], **({"Content-Type": t[1]} if t[1] else {})}))


def send(base: str, req: FuzzRequest, timeout_s: float = 60.0) -> tuple[int, str, bytes]:
    """(status, Content-Type, body) of one request, over a fresh connection."""
    url = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout_s)
    try:
        conn.request("POST", req.path, body=req.body, headers=req.headers)
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type", ""), r.read()
    except (ConnectionResetError, BrokenPipeError):  # the server closed on an over-size body before reading it
        return 413, "", b""
    finally:
        conn.close()


def check(status: int, content_type: str, body: bytes) -> str | None:
    """None when the answer is acceptable, else what is wrong with it."""
    if 200 <= status < 300:
        if content_type.startswith("text/event-stream"):
            return None if body.rstrip().endswith(b"data: [DONE]") else "stream without [DONE]"
        try:
            return None if "choices" in json.loads(body) else "2xx without choices"
        except ValueError:
            return "2xx body is not JSON"
    if status not in FIELD_STATUSES:
        return f"status {status}"
    if not body and status == 413:
        return None  # closed before reading a body past the limit (http.client cannot read the answer)
    try:
        err = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return f"{status} body is not an OpenAI error object: {body[:80]!r}"
    names_field = isinstance(err.get("param"), str) and err["param"] or status == 429  # overload names no field
    if not (names_field and err.get("code") == status and err.get("message")):
        return f"{status} error does not name a field: {err}"
    return None


def get_json(base: str, path: str) -> tuple[int, dict]:
    status, _, body = _get(base, path)
    return status, json.loads(body) if body else {}


def _get(base: str, path: str) -> tuple[int, str, bytes]:
    url = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type", ""), r.read()
    finally:
        conn.close()


def greedy_tokens(base: str) -> list[int]:
    status, _, body = send(base, FuzzRequest("/v1/completions", json.dumps(GREEDY).encode(),
                                             {"Content-Type": "application/json"}))
    assert status == 200, body
    return json.loads(body)["choices"][0]["token_ids"]


def fuzz(base: str, num_examples: int, seed: int = 0) -> dict:
    """Send `num_examples` drawn requests; returns counts by status and the problems found."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as fix_seed

    openapi = get_json(base, "/openapi.json")[1]
    statuses: collections.Counter = collections.Counter()
    problems: list[str] = []

    @fix_seed(seed)
    @settings(max_examples=num_examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(req=request_strategy(openapi))
    def one(req: FuzzRequest) -> None:
        status, ctype, body = send(base, req)
        statuses[status] += 1
        problem = check(status, ctype, body)
        if problem:
            problems.append(f"{req.path} {req.headers} {req.body[:120]!r} -> {problem}")

    one()
    return {"num_requests": sum(statuses.values()), "statuses": dict(sorted(statuses.items())), "problems": problems}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="inferlab bench fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--batch", type=int, default=200, help="examples per Hypothesis run (a new seed each)")
    parser.add_argument("--max-model-len", type=int, default=64, help="the served context (keeps answers short)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.batch < 1:
        parser.error("--minutes must be > 0 and --batch >= 1")
    from inferlab.bench.serverproc import server_process

    total: collections.Counter = collections.Counter()
    problems: list[str] = []
    start = time.monotonic()
    with server_process(["--max-model-len", str(args.max_model_len), "--max-waiting", "64"]) as (base, _proc):
        before = greedy_tokens(base)
        seed = 0
        while time.monotonic() - start < args.minutes * 60:
            result = fuzz(base, args.batch, seed)
            total.update(result["statuses"])
            problems += result["problems"]
            seed += 1
        health, ready = _get(base, "/health")[0], _get(base, "/ready")[0]
        same = greedy_tokens(base) == before
    elapsed_s = time.monotonic() - start
    print(f"{'status':>8} {'requests':>9}")
    for status, n in sorted(total.items()):
        print(f"{status:>8} {n:>9}")
    print(f"{sum(total.values())} requests in {elapsed_s:.0f} s; problems {len(problems)}; /health {health}; "
          f"/ready {ready}; greedy tokens unchanged: {same}")
    for p in problems[:10]:
        print("  problem:", p)
    print(json.dumps({"benchmark": "fuzz", "minutes": round(elapsed_s / 60, 2), "num_requests": sum(total.values()),
                      "statuses": {str(k): v for k, v in sorted(total.items())}, "num_problems": len(problems),
                      "health": health, "ready": ready, "greedy_unchanged": same}))
    return 0 if not problems and health == ready == 200 and same else 1
