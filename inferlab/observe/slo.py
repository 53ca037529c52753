"""SLOs as Prometheus rules: SLI recording rules and multi-window, multi-burn-rate alerts.

Flow: an `SLOConfig` (thresholds that are bucket bounds of vLLM's histograms, objectives) ->
`recording_rules` (each SLI's error ratio over every alert window, goodput, availability) and
`alert_rules` (the SRE workbook's scheme: page when the 1 h AND 5 m error ratios exceed 14.4x
the error budget, or 6 h AND 30 m exceed 6x; ticket when 3 d AND 6 h exceed 1x) -> `rules_yaml`
for Prometheus (`rules/inferlab.rules.yml` is this module's output for the defaults; its
`promtool test rules` unit tests sit beside it).

SLIs, all from the vLLM-named metrics (`exposition.py`), summed over replicas per model:
- ttft: share of requests whose time to first token exceeded `ttft_s` (histogram bucket `le`);
- tpot: share of requests whose time per output token exceeded `tpot_s`;
- availability: share of finished requests that failed (`finished_reason="error"`);
- goodput: requests per second finishing within `e2e_s` (the metrics module's goodput for an E2E SLO).

`time_scale` divides every window (and the `for` of the replica alert): 60 turns 1 h into 1 min,
so a chaos experiment of a minute shows what the real rules would do over an hour.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from inferlab.observe.exposition import INTER_TOKEN_LATENCY_BUCKETS, REQUEST_LATENCY_BUCKETS, TIME_TO_FIRST_TOKEN_BUCKETS

SLIS = ("ttft", "tpot", "availability")
# (long window, short window, burn-rate factor, severity): SRE workbook, chapter 5, table 5-8 (ticket at 1x over 3 d)
BURN_RATE_WINDOWS = (("1h", "5m", 14.4, "page"), ("6h", "30m", 6.0, "page"), ("3d", "6h", 1.0, "ticket"))
WINDOWS = ("5m", "30m", "1h", "6h", "3d")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class SLOConfig:
    """Per-request objectives. Thresholds must be bucket bounds of the histogram they are read from.

    Args:
        ttft_s: a request is good if its TTFT <= ttft_s (a `vllm:time_to_first_token_seconds` bucket).
        tpot_s: ... if its TPOT <= tpot_s (a `vllm:request_time_per_output_token_seconds` bucket).
        e2e_s: goodput counts requests with E2E <= e2e_s (a `vllm:e2e_request_latency_seconds` bucket).
        objective: the target share of good requests for ttft and tpot (0.99: 1 % error budget).
        availability_objective: the target share of finished requests that did not fail.
        job: the Prometheus job of the replicas (the ReplicaDown alert).
        time_scale: every window divided by this (1: real time; 60: an hour in a minute).
    """

    ttft_s: float = 1.0
    tpot_s: float = 0.1
    e2e_s: float = 10.0
    objective: float = 0.99
    availability_objective: float = 0.999
    job: str = "inferlab"
    time_scale: int = 1

    def __post_init__(self) -> None:
        for name, buckets, metric in (("ttft_s", TIME_TO_FIRST_TOKEN_BUCKETS, "time_to_first_token_seconds"),
                                      ("tpot_s", INTER_TOKEN_LATENCY_BUCKETS, "request_time_per_output_token_seconds"),
                                      ("e2e_s", REQUEST_LATENCY_BUCKETS, "e2e_request_latency_seconds")):
            if getattr(self, name) not in buckets:
                raise ValueError(f"SLOConfig.{name}={getattr(self, name)!r} is not a bucket bound of vllm:{metric} "
                                 f"(one of {buckets})")
        for name in ("objective", "availability_objective"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"SLOConfig.{name} must be in (0, 1), got {getattr(self, name)!r}")
        if not isinstance(self.time_scale, int) or self.time_scale < 1:
            raise ValueError(f"SLOConfig.time_scale must be an integer >= 1, got {self.time_scale!r}")

    def budget(self, sli: str) -> float:
        """The error budget of an SLI: 1 - its objective."""
        return 1 - (self.availability_objective if sli == "availability" else self.objective)

    def window(self, window: str) -> str:
        """A window as Prometheus writes it, divided by `time_scale` ("1h" -> "1m" at 60)."""
        return duration(seconds(window) // self.time_scale)


def seconds(window: str) -> int:
    """"5m" -> 300."""
    return int(window[:-1]) * _UNIT_S[window[-1]]


def duration(num_s: int) -> str:
    """300 -> "5m" (the largest unit that divides it)."""
    for unit in ("d", "h", "m"):
        if num_s % _UNIT_S[unit] == 0:
            return f"{num_s // _UNIT_S[unit]}{unit}"
    return f"{num_s}s"


def _le(x: float) -> str:
    """A bucket bound as prometheus_client writes `le` ("1.0", "0.1", "10.0")."""
    return repr(float(x))


def error_ratio_expr(sli: str, window: str, slo: SLOConfig = SLOConfig()) -> str:
    """PromQL: the share of bad requests of `sli` over `window` (as written, not scaled), per model."""
    w = slo.window(window)
    if sli == "ttft":
        good, total = f'vllm:time_to_first_token_seconds_bucket{{le="{_le(slo.ttft_s)}"}}', \
            "vllm:time_to_first_token_seconds_count"
    elif sli == "tpot":
        good, total = f'vllm:request_time_per_output_token_seconds_bucket{{le="{_le(slo.tpot_s)}"}}', \
            "vllm:request_time_per_output_token_seconds_count"
    elif sli == "availability":
        return (f'sum by (model_name) (rate(vllm:request_success_total{{finished_reason="error"}}[{w}]))\n'
                f"/\nsum by (model_name) (rate(vllm:request_success_total[{w}]))")
    else:
        raise ValueError(f"unknown SLI {sli!r}; one of {SLIS}")
    return (f"1 - (\n  sum by (model_name) (rate({good}[{w}]))\n  /\n"
            f"  sum by (model_name) (rate({total}[{w}]))\n)")


def record_name(sli: str, window: str) -> str:
    """The recorded series of an SLI's error ratio, e.g. inferlab:ttft_slo_error:ratio_rate5m."""
    return f"inferlab:{sli}_slo_error:ratio_rate{window}"


def router_availability_expr(window: str) -> str:
    """PromQL: the share of the router's answers over `window` that were not errors.

    What the router's clients got: a replica that dies mid-answer never counts the request itself.
    """
    return (f'1 - (\n  sum(rate(inferlab_router_requests_total{{code=~"5..|cut"}}[{window}]))\n  /\n'
            f"  sum(rate(inferlab_router_requests_total[{window}]))\n)")


def recording_rules(slo: SLOConfig = SLOConfig()) -> list[dict]:
    rules = [{"record": record_name(sli, w), "expr": error_ratio_expr(sli, w, slo)} for sli in SLIS for w in WINDOWS]
    w = slo.window("5m")
    rules.append({"record": "inferlab:goodput:rate5m", "expr": (
        f'sum by (model_name) (rate(vllm:e2e_request_latency_seconds_bucket{{le="{_le(slo.e2e_s)}"}}[{w}]))')})
    rules.append({"record": "inferlab:ttft_seconds:p99_5m", "expr": (
        f"histogram_quantile(0.99, sum by (model_name, le) (rate(vllm:time_to_first_token_seconds_bucket[{w}])))")})
    rules.append({"record": "inferlab:router_availability:ratio_rate5m", "expr": router_availability_expr(w)})
    rules.append({"record": "inferlab:router_replicas_healthy:ratio", "expr": (
        "sum(inferlab_router_replica_healthy) / count(inferlab_router_replica_healthy)")})
    return rules


def burn_rate_expr(sli: str, long: str, short: str, factor: float, slo: SLOConfig = SLOConfig()) -> str:
    """PromQL: both windows' error ratios above `factor` times the budget (over recorded series)."""
    threshold = f"({factor} * {slo.budget(sli):.6g})"
    return (f"{record_name(sli, long)} > {threshold}\nand\n{record_name(sli, short)} > {threshold}")


def alert_rules(slo: SLOConfig = SLOConfig()) -> list[dict]:
    rules = []
    for sli in SLIS:
        for severity in ("page", "ticket"):
            exprs = [f"(\n{burn_rate_expr(sli, long, short, factor, slo)}\n)"
                     for long, short, factor, sev in BURN_RATE_WINDOWS if sev == severity]
            objective = slo.availability_objective if sli == "availability" else slo.objective
            rules.append({
                "alert": f"{sli.upper() if sli != 'availability' else 'Availability'}ErrorBudgetBurn"
                         f"{severity.capitalize()}",
                "expr": "\nor\n".join(exprs),
                "labels": {"severity": severity, "sli": sli},
                "annotations": {"summary": f"{{{{ $labels.model_name }}}} burns its {sli} error budget "
                                           f"(objective {objective}) too fast ({severity})"}})
    rules.append({"alert": "ReplicaDown", "expr": f'up{{job="{slo.job}"}} == 0',
                  "for": duration(max(1, 60 // slo.time_scale)),
                  "labels": {"severity": "page", "sli": "availability"},
                  "annotations": {"summary": "replica {{ $labels.instance }} does not answer its scrape"}})
    # the router's view: it ejected a replica (a node lost), and its clients' availability
    rules.append({"alert": "RouterReplicaEjected", "expr": "inferlab_router_replica_healthy == 0",
                  "for": duration(max(1, 30 // slo.time_scale)),
                  "labels": {"severity": "ticket", "sli": "availability"},
                  "annotations": {"summary": "the router ejected replica {{ $labels.replica }} (capacity lost)"}})
    # From the raw counters, not the recorded series: the alert group runs beside the recording group, so
    # at the first evaluation after the errors it could read the record of the evaluation before (the
    # promtool unit test missed the page in 1 run of 30 that way).
    rules.append({"alert": "RouterAvailabilityLow",
                  "expr": f"(\n{router_availability_expr(slo.window('5m'))}\n) < {slo.availability_objective}",
                  "labels": {"severity": "page", "sli": "availability"},
                  "annotations": {"summary": "the router's clients got errors: availability over 5 m is "
                                             "{{ $value | humanizePercentage }} (objective "
                                             f"{slo.availability_objective})"}})
    return rules


def rule_groups(slo: SLOConfig = SLOConfig()) -> dict:
    return {"groups": [{"name": "inferlab-sli", "rules": recording_rules(slo)},
                       {"name": "inferlab-slo-alerts", "rules": alert_rules(slo)}]}


class _Dumper(yaml.SafeDumper):
    """Multi-line PromQL as YAML block literals (`|`), readable in the rule file."""


_Dumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s,
                                                               style="|" if "\n" in s else None))


def rules_yaml(slo: SLOConfig = SLOConfig()) -> str:
    """The rule file Prometheus loads (`rules/inferlab.rules.yml` for the defaults)."""
    header = ("# Written by `python -m inferlab.observe.slo` (inferlab/observe/slo.py); edit that, not this.\n"
              f"# {slo}\n")
    return header + yaml.dump(rule_groups(slo), Dumper=_Dumper, sort_keys=False, width=120)


if __name__ == "__main__":
    print(rules_yaml(), end="")
