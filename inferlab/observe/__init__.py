"""Observability and incident drills: metrics exposition under vLLM's names, OpenTelemetry spans,
a managed Prometheus with SLO recording and burn-rate alert rules, chaos experiments, and the
artefacts of incident response.

Layout: exposition.py (the engine's Prometheus metrics), tracing.py (request spans), slo.py (SLIs
and burn-rate alerts as rules; rules/ holds the shipped file and its promtool unit tests),
prometheus.py (start Prometheus on loopback, query it; promtool), chaos/ (fault injection and
Chaos Toolkit experiments on a live local stack), snapshots.py (what each fault does to a fleet's
metrics, for diagnosis drills), incident.py (playbook and postmortem templates, the remediation
backlog's schema). `serving.server` uses exposition and tracing; nothing here imports serving.
"""
