"""`inferlab route` refuses bad settings with a message naming them; `simulate --router` knows every policy."""

from __future__ import annotations

import pytest

from inferlab.policies import route
from inferlab.serving import router
from inferlab.sim.main import ROUTERS, resolve


@pytest.mark.parametrize("argv, message", [
    (["--replica", "localhost:1"], "must start with http"),
    ([], "at least one replica"),
    (["--replica", "http://a:1", "--replica", "http://a:1"], "repeat"),
    (["--replica", "http://a:1", "--policy", "nope"], "unknown 'nope'"),
    (["--replica", "http://a:1", "--tenants", "x:speed=1"], "bad limit"),
    (["--replica", "http://a:1", "--max-pending-prefill-tokens", "5"], "prefix-load only"),
])
def test_bad_settings_are_named(argv, message, capsys) -> None:
    with pytest.raises(SystemExit):
        router.main(argv)
    assert message in capsys.readouterr().err


def test_simulate_knows_every_shipped_router() -> None:
    assert set(route.ROUTERS) <= set(ROUTERS)
    assert resolve("prefix-load", ROUTERS, "router") is route.prefix_load
    assert resolve("inferlab.policies.route:session_affinity", ROUTERS, "router") is route.session_affinity


def test_the_client_trace_context_reaches_the_replica() -> None:
    """W3C trace context (traceparent, tracestate) is passed through the router; other client headers are not."""
    from multidict import CIMultiDict

    client = CIMultiDict({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                          "tracestate": "vendor=x", "Authorization": "Bearer secret", "X-Tenant": "a"})
    sent = router.forward_headers(client)
    assert sent["traceparent"] == client["traceparent"] and sent["tracestate"] == "vendor=x"
    assert "Authorization" not in sent and "X-Tenant" not in sent
    assert router.forward_headers(CIMultiDict()) == {"Content-Type": "application/json"}
