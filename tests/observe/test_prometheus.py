"""A managed Prometheus scrapes a real `inferlab serve`: queries return the kit's metrics and the SLO rules
(time-compressed) are evaluated; bad targets and queries get clear errors."""

import json
import time
import urllib.request

import pytest

from inferlab.bench.serverproc import server_process
from inferlab.observe import prometheus, slo

pytestmark = pytest.mark.skipif(prometheus.shutil.which("prometheus") is None, reason=prometheus.INSTALL_HINT)


@pytest.fixture(scope="module")
def stack():
    with server_process(["--served-model-name", "tiny"]) as (base, _proc):
        rules = slo.rules_yaml(slo.SLOConfig(time_scale=60))
        with prometheus.PrometheusServer([base.removeprefix("http://")], rules, scrape_interval_s=0.5) as prom:
            yield base, prom


def wait_for(fn, timeout_s=20.0):
    end = time.monotonic() + timeout_s
    while True:
        result = fn()
        if result or time.monotonic() > end:
            return result
        time.sleep(0.25)


def test_a_query_returns_the_servers_metrics(stack):
    base, prom = stack
    assert wait_for(lambda: prom.query("vllm:generation_tokens_total")), "no scrape within 20 s"
    body = json.dumps({"model": "tiny", "prompt": [1, 2, 3], "max_tokens": 6, "ignore_eos": True}).encode()
    for _ in range(3):
        req = urllib.request.Request(base + "/v1/completions", body, {"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=60).read()
    got = wait_for(lambda: [s for s in prom.query("vllm:generation_tokens_total") if s.value == 18])
    assert got and got[0].labels["model_name"] == "tiny" and got[0].labels["job"] == "inferlab", \
        prom.query("vllm:generation_tokens_total")
    assert wait_for(lambda: prom.query('sum(vllm:request_success_total{finished_reason="length"})'))[0].value == 3
    assert all(prom.targets_up().values())
    # a recording rule over the compressed 5 m window (5 s): no request missed the 1 s TTFT objective
    ratio = wait_for(lambda: [s for s in prom.query("inferlab:ttft_slo_error:ratio_rate30m") if s.value == s.value])
    assert ratio and ratio[0].value == 0.0, ratio
    series = prom.query_range("vllm:generation_tokens_total", time.time() - 10, time.time(), 1)
    assert series and series[0].points[-1][1] == 18


def test_bad_queries_and_targets_are_named(stack):
    _base, prom = stack
    with pytest.raises(ValueError, match="prometheus rejected 'sum by'"):
        prom.query("sum by")
    with pytest.raises(ValueError, match="not on loopback"):
        prometheus.PrometheusServer(["10.0.0.1:8000"])
