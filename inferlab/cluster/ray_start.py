"""`ray start` that survives a slow machine: the agents' fixed ports are announced before they import Ray.

Why: Ray 2.60's raylet starts the dashboard agent and the runtime-env agent, then waits a fixed 15 s
(`WaitForPersistedPort` in src/ray/raylet/node_manager.cc, not configurable in this release:
RAY_agent_register_timeout_ms and RAY_raylet_start_wait_time_s do not reach it) for each agent to write
its port to `<session_dir>/<port_name>_<node_id>`. On the shared 2-core machine under load (load
average 12-20) the dashboard agent's imports alone took 24-27 s, and the raylet aborted with
"Check failed: ... Timed out waiting for file .../dashboard_agent_listen_port_<node id>".

What: `python -m inferlab.cluster.ray_start start ARGS` is `ray start ARGS` with each agent's command
prefixed by `python -m inferlab.cluster.ray_start agent`: a stdlib-only stub that writes the port files
for the ports fixed on the command line (`ray_cluster.AGENT_PORTS`; the agent writes the same numbers
again once it is up) and then replaces itself with the real agent (`os.execv`). Agents with port 0
(dynamic) are left alone: the stub cannot know their port.
"""

from __future__ import annotations

import os
import sys

# the agent's flag -> the port file the raylet waits for
PORT_FILES = {"--grpc-port": "metrics_agent_port", "--listen-port": "dashboard_agent_listen_port",
              "--metrics-export-port": "metrics_export_port",
              "--runtime-env-agent-port": "runtime_env_agent_port"}


def _flags(argv: list[str]) -> dict[str, str]:
    out = {}
    for arg in argv:
        if arg.startswith("--") and "=" in arg:
            key, value = arg.split("=", 1)
            out[key] = value
    return out


def agent(argv: list[str]) -> None:
    """Write the fixed ports' files, then exec the real agent command `argv`."""
    flags = _flags(argv)
    session_dir, node_id = flags.get("--session-dir"), flags.get("--node-id")
    if session_dir and node_id:
        for flag, name in PORT_FILES.items():
            port = flags.get(flag, "0")
            if port.isdigit() and int(port) > 0:
                path = os.path.join(session_dir, f"{name}_{node_id}")
                tmp = path + ".tmp"
                with open(tmp, "w") as handle:
                    handle.write(port)
                os.replace(tmp, path)
    os.execv(argv[0], argv)


def start(argv: list[str]) -> int:
    import subprocess

    from ray._private import services
    from ray.scripts import scripts

    stub = [sys.executable, "-S", os.path.abspath(__file__), "agent"]
    original = services.start_ray_process

    def start_ray_process(command, process_type, *args, **kwargs):
        if process_type == "raylet":
            prefixed = []
            for arg in command:
                for name in ("--dashboard_agent_command=", "--runtime_env_agent_command="):
                    if arg.startswith(name):
                        arg = name + subprocess.list2cmdline(stub) + " " + arg[len(name):]
                prefixed.append(arg)
            command = prefixed
        return original(command, process_type, *args, **kwargs)

    services.start_ray_process = start_ray_process
    sys.argv = ["ray", "start", *argv]
    return scripts.main()


if __name__ == "__main__":
    if sys.argv[1:2] == ["agent"]:
        agent(sys.argv[2:])
    elif sys.argv[1:2] == ["start"]:
        sys.exit(start(sys.argv[2:]))
    else:
        sys.exit("usage: python -m inferlab.cluster.ray_start start RAY_START_ARGS")
