"""A real Prometheus server managed by the kit, its HTTP query API, and promtool's rule tests.

Flow: `PrometheusServer(targets, rules)` writes prometheus.yml (scrape every `scrape_interval_s`,
rules evaluated as often) and the rule file into a work folder, starts Debian's `prometheus` on a
free loopback port, waits for /-/ready; `query`, `query_range` and `alerts` read its HTTP API
(/api/v1/...); `stop` ends it (SIGTERM, then SIGKILL). `promtool_test_rules` runs promtool's unit
tests of a rule text against a test text (what lab 6 grades with).

Where the binaries are missing, `require()` raises `PrometheusMissing` naming the fix; tests and
notebook cells skip on it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from inferlab.procs import stop_process

INSTALL_HINT = "install Debian's prometheus package (apt-get install prometheus; `make install` does it as root)"


class PrometheusMissing(RuntimeError):
    """`prometheus` or `promtool` is not on PATH."""


def require(binary: str = "prometheus") -> str:
    """The path of `binary` ("prometheus" or "promtool"), or PrometheusMissing saying how to get it."""
    path = shutil.which(binary)
    if path is None:
        raise PrometheusMissing(f"{binary} is not on PATH: {INSTALL_HINT}")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Sample:
    """One series of a query result: its labels and value (instant) or (time s, value) points (range)."""

    labels: dict[str, str]
    value: float = float("nan")
    points: tuple[tuple[float, float], ...] = field(default=())


class PrometheusServer:
    """Prometheus on 127.0.0.1 scraping `targets` ("host:port" of `inferlab serve` replicas).

    Args:
        targets: scrape targets (loopback only: anything else raises ValueError).
        rules: rule file text (YAML, e.g. `slo.rules_yaml(...)`), or None.
        scrape_interval_s: scrape and rule evaluation interval (>= 0.1 s).
        job: the job label of the targets.
        workdir: where config and TSDB go (default: a temporary folder removed on stop).
    """

    def __init__(self, targets: list[str], rules: str | None = None, scrape_interval_s: float = 1.0,
                 job: str = "inferlab", workdir: str | Path | None = None) -> None:
        for t in targets:
            host = t.rsplit(":", 1)[0]
            if host not in ("127.0.0.1", "localhost", "[::1]"):
                raise ValueError(f"scrape target {t!r} is not on loopback (127.0.0.1:PORT)")
        if not scrape_interval_s >= 0.1:
            raise ValueError(f"scrape_interval_s must be >= 0.1, got {scrape_interval_s!r}")
        self.targets, self.rules, self.job = list(targets), rules, job
        self.scrape_interval_s = scrape_interval_s
        self._tmp = None if workdir is not None else tempfile.TemporaryDirectory(prefix="inferlab-prom-")
        self.workdir = Path(workdir if workdir is not None else self._tmp.name)
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict:
        interval = f"{int(self.scrape_interval_s * 1000)}ms"
        cfg = {"global": {"scrape_interval": interval, "evaluation_interval": interval,
                          "scrape_timeout": f"{max(100, int(self.scrape_interval_s * 800))}ms"},
               "scrape_configs": [{"job_name": self.job, "static_configs": [{"targets": self.targets}]}]}
        if self.rules is not None:
            cfg["rule_files"] = ["rules.yml"]
        return cfg

    def start(self, timeout_s: float = 60.0) -> PrometheusServer:
        binary = require("prometheus")
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(self.config(), sort_keys=False))
        if self.rules is not None:
            (self.workdir / "rules.yml").write_text(self.rules)
        self.port = _free_port()
        self._log = open(self.workdir / "prometheus.log", "w")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={self.workdir / 'prometheus.yml'}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle", "--log.level=warn"],
            stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir)
        end = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > end:
                self.stop()
                raise RuntimeError(f"prometheus was not ready within {timeout_s:.0f} s: {self.log()[-2000:]}")
            time.sleep(0.2)

    def log(self) -> str:
        path = self.workdir / "prometheus.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, grace_s=15.0)
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- the HTTP API -------------------------------------------------------------------------
    def _get(self, path: str, **params) -> dict:
        url = f"{self.url}{path}?{urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})}"
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:  # 400 for a bad query: its message says why
            body = json.loads(exc.read() or b"{}")
            raise ValueError(f"prometheus rejected {params.get('query', path)!r}: {body.get('error', exc)}") from None
        if body.get("status") != "success":
            raise ValueError(f"prometheus: {body.get('error')}")
        return body["data"]

    def query(self, expr: str, at_s: float | None = None) -> list[Sample]:
        """An instant query (now, or at Unix time `at_s`)."""
        data = self._get("/api/v1/query", query=expr, time=at_s)
        if data["resultType"] == "scalar":
            return [Sample({}, float(data["result"][1]))]
        return [Sample(r["metric"], float(r["value"][1])) for r in data["result"]]

    def query_range(self, expr: str, start_s: float, end_s: float, step_s: float = 1.0) -> list[Sample]:
        """A range query: each series' (Unix time s, value) points."""
        data = self._get("/api/v1/query_range", query=expr, start=start_s, end=end_s, step=step_s)
        return [Sample(r["metric"], points=tuple((float(t), float(v)) for t, v in r["values"]))
                for r in data["result"]]

    def alerts(self) -> list[dict]:
        """Active alerts (pending and firing): labels, state, activeAt."""
        return self._get("/api/v1/alerts")["alerts"]

    def targets_up(self) -> dict[str, bool]:
        """Each scrape target's health at its last scrape."""
        return {t["labels"]["instance"]: t["health"] == "up" for t in self._get("/api/v1/targets")["activeTargets"]}


def promtool_test_rules(rules: str, tests: str, timeout_s: float = 60.0) -> tuple[bool, str]:
    """Run `promtool test rules` on a test text whose `rule_files` is ["rules.yml"], against `rules`.

    Returns (passed, promtool's output).
    """
    binary = require("promtool")
    with tempfile.TemporaryDirectory(prefix="inferlab-promtool-") as tmp:
        Path(tmp, "rules.yml").write_text(rules)
        Path(tmp, "tests.yml").write_text(tests)
        out = subprocess.run([binary, "test", "rules", "tests.yml"], cwd=tmp, capture_output=True, text=True,
                             timeout=timeout_s)
    return out.returncode == 0, out.stdout + out.stderr


def rule_file(records: dict[str, str] | None = None, alerts: dict[str, tuple[str, dict]] | None = None) -> str:
    """A rule file: recording rules {name: expr} and alerts {name: (expr, labels)}, one group each."""
    groups = []
    if records:
        groups.append({"name": "records", "rules": [{"record": k, "expr": v} for k, v in records.items()]})
    if alerts:
        groups.append({"name": "alerts", "rules": [{"alert": k, "expr": e, "labels": dict(lab)}
                                                   for k, (e, lab) in alerts.items()]})
    return yaml.safe_dump({"groups": groups}, sort_keys=False)


def unit_test(series: dict[str, str], exprs: list[tuple[str, str, list[tuple[str, float]]]] = (),
              alerts: list[tuple[str, str, list[dict]]] = (), interval: str = "1m") -> str:
    """A promtool test file for `promtool_test_rules`: one case.

    Args:
        series: input series ('name{labels}') -> promtool values notation ('0+80x70').
        exprs: (PromQL, eval time, [(labels '{...}', value)]) checks.
        alerts: (alert name, eval time, [expected labels of each firing alert]) checks.
    """
    case = {"interval": interval, "input_series": [{"series": k, "values": v} for k, v in series.items()]}
    if exprs:
        case["promql_expr_test"] = [{"expr": e, "eval_time": t, "exp_samples": [{"labels": lab, "value": v}
                                                                                 for lab, v in samples]}
                                    for e, t, samples in exprs]
    if alerts:
        case["alert_rule_test"] = [{"alertname": n, "eval_time": t, "exp_alerts": [{"exp_labels": lab}
                                                                                  for lab in labels]}
                                   for n, t, labels in alerts]
    return yaml.safe_dump({"rule_files": ["rules.yml"], "evaluation_interval": interval, "tests": [case]},
                          sort_keys=False)
