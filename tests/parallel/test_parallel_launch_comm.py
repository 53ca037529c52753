"""The launcher (results, errors, timeouts, torchrun) and the communication recorder's byte counts."""

import os
import subprocess
import sys

import pytest

from inferlab.parallel.comm import CommRecord, CommRecorder, summarize
from inferlab.parallel.launch import LaunchConfig, WorkerError, free_port, launch, resolve

import parallel_checks as pc

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def comm_ranks():
    return launch(pc.sum_ranks_and_all_comm_ops, 2, 10.0)


def test_launch_returns_results_by_rank(comm_ranks):
    assert [total for total, _ in comm_ranks] == [10.0, 10.0]  # (0 + 1) * 10 on each rank


def test_worker_error_names_rank_and_traceback():
    with pytest.raises(WorkerError) as err:
        launch(pc.fail_on_rank_1, 2, timeout_s=60)
    assert err.value.rank == 1
    assert "deliberate failure on rank 1" in err.value.worker_traceback
    assert "ValueError" in err.value.worker_traceback


def test_hang_becomes_timeout():
    with pytest.raises(TimeoutError, match="did not finish"):
        launch(pc.sleep_forever, 2, timeout_s=4)


def test_config_validation_and_helpers():
    with pytest.raises(ValueError, match="world_size"):
        LaunchConfig(0)
    with pytest.raises(ValueError, match="backend"):
        LaunchConfig(2, backend="mpi")
    assert 0 < free_port() < 65536
    assert resolve("parallel_checks:sum_ranks") is pc.sum_ranks
    with pytest.raises(ValueError, match="module:function"):
        resolve("parallel_checks.sum_ranks")


def test_recorder_counts_every_op(comm_ranks):
    for rank, (_, recs) in enumerate(comm_ranks):
        got = {(r.op, r.num_bytes, r.peer) for r in recs}
        p = 2
        expected_collectives = {
            ("all_reduce", 40, -1), ("broadcast", 12, 0), ("all_gather", 16, -1),
            ("all_gather_into_tensor", 20, -1), ("reduce_scatter", 6 * 4 * p, -1),
            ("reduce_scatter_tensor", 7 * 4 * p, -1), ("all_to_all_single", (1 + 2) * 2 * 4, -1),
        }
        assert expected_collectives <= got
        peer = 1 - rank
        sent, received = (32, 36) if rank == 0 else (36, 32)
        assert ("send", sent, peer) in got and ("recv", received, peer) in got
        assert [r.op for r in recs if r.tag == "p2p"][2:] == ["isend", "irecv", "isend", "irecv"]
        a2a = next(r for r in recs if r.op == "all_to_all_single")
        assert a2a.num_remote_bytes == a2a.num_bytes - (rank + 1) * 2 * 4  # own chunk stays local
        assert all(r.rank == rank for r in recs)


def test_record_validation_and_summary():
    with pytest.raises(ValueError, match="unknown op"):
        CommRecord("all_reduce_typo", 4, 0)
    recs = [CommRecord("all_reduce", 8, 0, "a"), CommRecord("all_reduce", 8, 0, "a"), CommRecord("send", 4, 0, "b", 1)]
    assert summarize(recs) == {("all_reduce", "a"): (2, 16), ("send", "b"): (1, 4)}
    rec = CommRecorder(records=list(recs))
    assert rec.count("all_reduce") == 2 and rec.total_bytes(tag="b") == 4


@pytest.mark.slow
def test_same_worker_under_torchrun():
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [torchrun, "--nproc-per-node", "2", "--master-port", str(free_port()), "-m", "inferlab.parallel.launch",
           "inferlab.parallel.workers:tp_demo"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=100, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith('{"rank"')]
    assert len(lines) == 2 and all('"num_all_reduce": ' in line for line in lines)
