"""A node lost under load: the router ejects it, every request ends answered or with an error the client sees."""

import pytest


from .conftest import NEEDS_NAMESPACES

pytestmark = [pytest.mark.slow, NEEDS_NAMESPACES]


def test_node_lost_under_load_loses_nothing_silently():
    from inferlab.cluster.node_loss import run_node_loss

    result = run_node_loss(num_requests=60, rate_rps=6.0, kill_after_s=4.0, max_tokens=16)
    assert result["num_lost_silently"] == 0, result
    assert result["num_ok"] + result["num_errors"] == 60, result
    # only requests already streaming from the dead node may fail; the router moves everything else
    assert result["num_errors"] <= 8, result
    assert result["num_ok"] >= 40, result
    assert result["ejected_after_s"] is not None and result["ejected_after_s"] < 5.0, result
