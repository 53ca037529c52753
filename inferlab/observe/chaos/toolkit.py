"""Chaos Toolkit experiments on the local stack: the actions and probes they call, and `inferlab chaos run`.

An experiment is a Chaos Toolkit file (YAML or JSON): `steady-state-hypothesis` (probes on the
client's SLIs, checked before and after the method), `method` (actions on the stack: kill, pause,
proxy latency or drops, burst, long prompts), `rollbacks` (always played here). Its
`configuration.inferlab_stack` holds `StackConfig` fields. `run_experiment(path)` starts a
`Stack`, lets the load settle, hands the experiment to chaoslib (the Chaos Toolkit's engine, which
calls the functions below by module path), lets the stack recover, then reports: whether the
steady state held before and after, the client SLIs before/during/after the fault, which alerts
fired in Prometheus and how long after the fault began, and how many requests were lost.

The functions below act on the one stack this process is running (`_STACK`); they refuse when
none is running, so an experiment file cannot reach anything but the local stack.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import fields
from pathlib import Path

from inferlab.observe.chaos.stack import Stack, StackConfig

EXPERIMENTS = Path(__file__).parent / "experiments"
_STACK: Stack | None = None


def _stack() -> Stack:
    if _STACK is None:
        raise RuntimeError("no inferlab stack is running: run experiments with `inferlab chaos run EXPERIMENT`")
    return _STACK


# ---- probes ----------------------------------------------------------------------------------
def client_slis(window_s: float = 5.0, ttft_slo_s: float = 1.0) -> dict:
    """The client's SLIs over the last `window_s` seconds (availability, TTFT SLO ratio, p99 TTFT)."""
    now = time.time()
    return _stack().load.window(now - window_s, now, ttft_slo_s)


def slis_within(window_s: float = 5.0, min_availability: float = 0.99, min_ttft_slo_ratio: float = 0.95,
                ttft_slo_s: float = 1.0) -> bool:
    """True when, over the last `window_s` s, availability and the TTFT-SLO share meet their minimums."""
    s = client_slis(window_s, ttft_slo_s)
    return s["num_requests"] > 0 and s["availability"] >= min_availability and \
        s["ttft_slo_ratio"] >= min_ttft_slo_ratio


def firing_alerts() -> list[str]:
    """Names of the alerts firing in the stack's Prometheus now."""
    return sorted({a["labels"]["alertname"] for a in _stack().prometheus.alerts() if a["state"] == "firing"})


# ---- actions ---------------------------------------------------------------------------------
def kill_replica(replica: int) -> str:
    _stack().kill(replica)
    return f"killed {replica}"


def restart_replica(replica: int) -> str:
    _stack().restart(replica)
    return f"restarted {replica}"


def pause_replica(replica: int) -> str:
    _stack().pause(replica)
    return f"paused {replica}"


def resume_replica(replica: int) -> str:
    _stack().resume(replica)
    return f"resumed {replica}"


def set_proxy_fault(replica: int, latency_s: float = 0.0, drop_ratio: float = 0.0) -> str:
    _stack().set_proxy(replica, latency_s, drop_ratio)
    return f"proxy {replica}: +{latency_s} s, drop {drop_ratio}"


def clear_proxy_fault(replica: int) -> str:
    return set_proxy_fault(replica, 0.0, 0.0)


def burst(factor: float) -> str:
    _stack().burst(factor)
    return f"rate x{factor}"


def long_prompts(num_requests: int, prompt_len: int, max_tokens: int) -> str:
    _stack().long_prompts(num_requests, prompt_len, max_tokens)
    return f"{num_requests} x {prompt_len} tokens"


# ---- the runner ------------------------------------------------------------------------------
def load(path: str | Path) -> dict:
    """An experiment by path, or by the name of a shipped one ("kill-replica")."""
    p = Path(path)
    if not p.exists():
        p = EXPERIMENTS / f"{path}.yml"
    if not p.exists():
        names = ", ".join(sorted(x.stem for x in EXPERIMENTS.glob("*.yml")))
        raise ValueError(f"no experiment {str(path)!r}: give a file or one of {names}")
    from chaoslib.loader import load_experiment

    return load_experiment(str(p))


def stack_config(experiment: dict) -> StackConfig:
    given = (experiment.get("configuration") or {}).get("inferlab_stack") or {}
    known = {f.name for f in fields(StackConfig)}
    unknown = set(given) - known
    if unknown:
        raise ValueError(f"configuration.inferlab_stack has unknown keys {sorted(unknown)}; known: {sorted(known)}")
    if "serve_args" in given:
        given = dict(given, serve_args=tuple(given["serve_args"]))
    return StackConfig(**given)


def run_experiment(experiment: str | Path | dict, warmup_s: float = 8.0, recovery_s: float = 10.0,
                   journal_path: str | Path | None = None) -> dict:
    """Run one experiment (a path, a shipped name, or a loaded dict) on a fresh stack; returns the report."""
    global _STACK
    from chaoslib.experiment import run_experiment as chaos_run

    experiment = experiment if isinstance(experiment, dict) else load(experiment)
    config = stack_config(experiment)
    stack = Stack(config).start()
    _STACK = stack
    try:
        time.sleep(warmup_s)
        journal = chaos_run(experiment, settings={"runtime": {"rollbacks": {"strategy": "always"}}})
        time.sleep(recovery_s)
        report = _report(experiment, journal, stack, recovery_s)
        if journal_path is not None:
            Path(journal_path).write_text(json.dumps({"report": report, "journal": journal}, indent=1, default=str))
        return report
    finally:
        _STACK = None
        stack.close()


def _report(experiment: dict, journal: dict, stack: Stack, recovery_s: float) -> dict:
    started = next(t for t, what in stack.events if what == "stack started")
    faults = [t for t, _ in stack.events if t > started]
    fault_start = faults[0] if faults else started
    fault_end = faults[-1] if len(faults) > 1 else time.time() - recovery_s
    now = time.time()
    load = stack.load
    # a request in flight when the fault hit (started up to 1 s before) counts as "during"
    windows = {"before": load.window(fault_start - 6, fault_start - 1),
               "during": load.window(fault_start - 1, fault_end),
               "after": load.window(fault_end + 2, now)}
    alerts = _alert_times(stack, started, now, fault_start)
    states = journal.get("steady_states") or {}
    return {
        "experiment": experiment.get("title"),
        "status": journal.get("status"),
        "steady_state_before": (states.get("before") or {}).get("steady_state_met"),
        "steady_state_after": (states.get("after") or {}).get("steady_state_met"),
        "fault_s": round(fault_end - fault_start, 1),
        "slis": windows,
        "alerts": alerts,
        "num_requests_lost": load.window(fault_start - 1, now)["num_failed"],
        "events": [(round(t - fault_start, 1), what) for t, what in stack.events],
        "series": _series(stack, started, now),
    }


def _alert_times(stack: Stack, start_s: float, end_s: float, fault_start: float) -> dict[str, float]:
    """Each alert's first firing, in seconds after the fault began (negative: it fired before)."""
    out = {}
    for s in stack.prometheus.query_range('ALERTS{alertstate="firing"}', start_s, end_s,
                                          stack.config.scrape_interval_s):
        name = s.labels["alertname"]
        t = min(t for t, _ in s.points)
        out[name] = round(min(out.get(name, math.inf), t - fault_start), 1)
    return out


def _series(stack: Stack, start_s: float, end_s: float) -> dict[str, list[tuple[float, float]]]:
    """SLI and burn-rate series from Prometheus for plots (time relative to the stack's start)."""
    scale = stack.config.time_scale
    queries = {"ttft_error_ratio_5m": "sum(inferlab:ttft_slo_error:ratio_rate5m)",
               "ttft_error_ratio_1h": "sum(inferlab:ttft_slo_error:ratio_rate1h)",
               "up": 'sum(up{job="inferlab"})',
               "requests_per_s": f"sum(rate(vllm:request_success_total[{max(2, 300 // scale)}s]))"}
    out = {}
    for name, q in queries.items():
        got = stack.prometheus.query_range(q, start_s, end_s, 1.0)
        out[name] = [(round(t - start_s, 1), v) for t, v in got[0].points] if got else []
    return out


def format_row(report: dict) -> str:
    s = report["slis"]
    alerts = ", ".join(f"{k} +{v:.0f}s" for k, v in sorted(report["alerts"].items(), key=lambda kv: kv[1])) or "none"
    return (f"{report['experiment']}: held before={report['steady_state_before']} after={report['steady_state_after']}"
            f" | availability {s['before']['availability']:.2f}/{s['during']['availability']:.2f}/"
            f"{s['after']['availability']:.2f} | TTFT p99 {s['before']['ttft_p99_s']:.2f}/"
            f"{s['during']['ttft_p99_s']:.2f}/{s['after']['ttft_p99_s']:.2f} s | alerts: {alerts}"
            f" | lost {report['num_requests_lost']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="inferlab chaos", description="Chaos Toolkit experiments on a local stack")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the shipped experiments")
    run = sub.add_parser("run", help="run an experiment (a file, or a shipped one's name)")
    run.add_argument("experiment")
    run.add_argument("--warmup-s", type=float, default=8.0)
    run.add_argument("--recovery-s", type=float, default=10.0)
    run.add_argument("--journal", default=None, help="write the report and Chaos Toolkit journal here (JSON)")
    args = parser.parse_args(argv)
    if args.cmd == "list":
        for p in sorted(EXPERIMENTS.glob("*.yml")):
            print(f"{p.stem:<16} {load(p).get('title')}")
        return 0
    try:
        report = run_experiment(args.experiment, args.warmup_s, args.recovery_s, args.journal)
    except ValueError as exc:
        parser.error(str(exc))
    print(format_row(report))
    print(f"steady state held: {bool(report['steady_state_after'])}")
    print(json.dumps({k: v for k, v in report.items() if k != "series"}))
    return 0
