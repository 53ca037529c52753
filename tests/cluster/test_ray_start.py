"""The agent stub of `inferlab.cluster.ray_start`: fixed ports announced at once, dynamic ones left to the agent."""

import subprocess
import sys

from inferlab.cluster import ray_start


def test_the_stub_writes_fixed_ports_then_runs_the_agent(tmp_path):
    marker = tmp_path / "agent-ran"
    agent = [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('ok')"]
    flags = [f"--session-dir={tmp_path}", "--node-id=abc123", "--grpc-port=52365", "--listen-port=0",
             "--metrics-export-port=52368"]
    done = subprocess.run([sys.executable, "-S", ray_start.__file__, "agent", *agent, *flags], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "metrics_agent_port_abc123").read_text() == "52365"
    assert (tmp_path / "metrics_export_port_abc123").read_text() == "52368"
    assert not (tmp_path / "dashboard_agent_listen_port_abc123").exists()  # port 0: only the agent knows it
    assert marker.read_text() == "ok"  # then it became the real agent
