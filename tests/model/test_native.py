"""The C kernels (inferlab.model.native) against the torch paths they replace, and their refusals."""

import random

import pytest
import torch
import torch.nn.functional as F

from inferlab.model import native
from inferlab.model.attention import default_backend, make_backend
from inferlab.model.llama import RMSNorm, rope_cos_sin
from inferlab.model.step_ops import NativeStepOps, TorchStepOps

pytestmark = pytest.mark.skipif(not native.available(), reason=f"no native kernels: {native.unavailable_reason()}")


def _pool_case(seed: int, nkv: int, groups: int, d: int, block_size: int, rows: int, max_len: int):
    """A pool with random K/V, `rows` sequences of random lengths on randomly placed blocks."""
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    lens = [rng.randint(1, max_len) for _ in range(rows)]
    lens[0] = 1  # a one-token context
    max_blocks = -(-max_len // block_size)
    num_blocks = rows * max_blocks + 3
    k_pool = torch.randn(nkv, num_blocks, block_size, d, generator=gen)
    v_pool = torch.randn(nkv, num_blocks, block_size, d, generator=gen)
    free = torch.randperm(num_blocks, generator=gen).tolist()
    tables = torch.zeros(rows, max_blocks, dtype=torch.long)
    for r, n in enumerate(lens):
        for b in range(-(-n // block_size)):
            tables[r, b] = free.pop()
    qkv = torch.randn(rows, nkv * groups + 2 * nkv, d, generator=gen)  # q as a strided view, as in the engine
    return qkv[:, :nkv * groups], k_pool, v_pool, tables, torch.tensor(lens)


def _reference(q, k_pool, v_pool, tables, lens):
    """Each row alone: its K/V gathered slot by slot, SDPA with GQA."""
    nkv, _, bs, d = k_pool.shape
    out = torch.empty_like(q)
    for r, n in enumerate(lens.tolist()):
        slots = [(int(tables[r, j // bs]), j % bs) for j in range(n)]
        k = torch.stack([k_pool[:, b, o] for b, o in slots], dim=1)  # [nkv, n, d]
        v = torch.stack([v_pool[:, b, o] for b, o in slots], dim=1)
        out[r] = F.scaled_dot_product_attention(q[r][:, None], k, v, enable_gqa=True)[:, 0]
    return out


@pytest.mark.parametrize("nkv,groups,d,block_size", [(4, 2, 32, 4), (2, 4, 64, 16), (3, 1, 48, 5), (1, 8, 128, 8)])
def test_paged_decode_equals_per_row_attention(nkv, groups, d, block_size):
    q, k_pool, v_pool, tables, lens = _pool_case(nkv * 100 + d, nkv, groups, d, block_size, rows=9, max_len=70)
    out = torch.full_like(q, float("nan"))
    native.paged_decode(q, k_pool, v_pool, tables, lens, out)
    torch.testing.assert_close(out, _reference(q, k_pool, v_pool, tables, lens), rtol=1e-5, atol=1e-5)


def test_paged_decode_uses_torch_threads():
    q, k_pool, v_pool, tables, lens = _pool_case(5, 4, 2, 32, 4, rows=16, max_len=90)
    outs = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out = torch.empty_like(q)
            native.paged_decode(q, k_pool, v_pool, tables, lens, out)
            outs.append(out)
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)  # rows are independent: the same bits


def test_paged_decode_refuses_what_would_read_outside_the_pool():
    q, k_pool, v_pool, tables, lens = _pool_case(6, 4, 2, 32, 4, rows=4, max_len=20)
    out = torch.zeros_like(q)
    bad = tables.clone()
    bad[2, 0] = k_pool.shape[1]  # one past the last block
    with pytest.raises(ValueError, match="block table entry outside the pool"):
        native.paged_decode(q, k_pool, v_pool, bad, lens, out)
    assert out.abs().sum() == 0, "nothing may be written when the input is refused"
    with pytest.raises(ValueError, match="seq_lens must lie in"):
        native.paged_decode(q, k_pool, v_pool, tables, torch.tensor([1, 0, 3, 4]), out)
    with pytest.raises(ValueError, match="seq_lens must lie in"):
        native.paged_decode(q, k_pool, v_pool, tables, torch.tensor([1, 2, 3, tables.shape[1] * 4 + 1]), out)
    with pytest.raises(ValueError, match="float32"):
        native.paged_decode(q.double(), k_pool, v_pool, tables, lens, out)
    with pytest.raises(ValueError, match="heads contiguously"):
        native.paged_decode(q.transpose(1, 2).contiguous().transpose(1, 2), k_pool, v_pool, tables, lens, out)
    with pytest.raises(ValueError, match="does not fit"):
        native.paged_decode(q[:, :, :16], k_pool, v_pool, tables, lens, out[:, :, :16])


def test_step_ops_equal_the_torch_reference():
    gen = torch.Generator().manual_seed(3)
    ref, fast = TorchStepOps(), NativeStepOps()
    n, h, m, nh, nkv, d = 37, 64, 96, 4, 2, 16
    norm = RMSNorm(h, 1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(h, generator=gen) + 0.5)
    x, residual = torch.randn(n, h, generator=gen), torch.randn(n, h, generator=gen)
    out_ref, res_ref = ref.add_rms_norm(norm, x, residual.clone())
    res_fast = residual.clone()
    out_fast, res_back = fast.add_rms_norm(norm, x, res_fast)
    torch.testing.assert_close(out_fast, out_ref)
    torch.testing.assert_close(res_fast, res_ref)  # updated in place
    assert res_back is res_fast
    torch.testing.assert_close(fast.add_rms_norm(norm, None, residual)[0], ref.add_rms_norm(norm, None, residual)[0])

    gate_up = torch.randn(n, 2 * m, generator=gen) * 4
    torch.testing.assert_close(fast.silu_mul(gate_up), ref.silu_mul(gate_up))

    qkv = torch.randn(n, nh + 2 * nkv, d, generator=gen)
    cos, sin = rope_cos_sin(torch.randint(0, 300, (n,), generator=gen), d, 10000.0)
    pools = [torch.zeros(nkv, 20, 4, d) for _ in range(4)]
    slots = torch.randperm(80, generator=gen)[:n]
    got_ref = ref.rope_store_kv(qkv.clone(), cos, sin, pools[0], pools[1], slots)
    got_fast = fast.rope_store_kv(qkv.clone(), cos, sin, pools[2], pools[3], slots)
    for a, b in zip(got_fast, got_ref):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(pools[2], pools[0])
    torch.testing.assert_close(pools[3], pools[1])


def test_rope_store_kv_refuses_a_slot_outside_the_pool():
    k_pool, v_pool = torch.zeros(2, 4, 4, 8), torch.zeros(2, 4, 4, 8)
    qkv = torch.randn(3, 4 + 4, 8)
    cos, sin = rope_cos_sin(torch.arange(3), 8, 10000.0)
    with pytest.raises(ValueError, match="slot outside the pool"):
        NativeStepOps().rope_store_kv(qkv, cos, sin, k_pool, v_pool, torch.tensor([0, 16, 1]))
    assert k_pool.abs().sum() == 0 and v_pool.abs().sum() == 0, "nothing may be written"
    with pytest.raises(ValueError, match="rope_store_kv: slot_mapping must be a CPU torch.int64"):
        NativeStepOps().rope_store_kv(qkv, cos, sin, k_pool, v_pool, torch.tensor([0, 1, 2], dtype=torch.int32))
    with pytest.raises(ValueError, match="rms_norm: x must be a CPU torch.float32"):
        native.rms_norm(torch.zeros(2, 8, dtype=torch.float64), torch.ones(8), 1e-6)
    with pytest.raises(ValueError, match="silu_mul: gate_up must be"):
        native.silu_mul(torch.zeros(8, 2).t())


def test_without_a_compiler_the_cpu_default_is_the_gather_path(monkeypatch):
    saved = dict(native._state)
    try:
        native._state.clear()
        monkeypatch.setenv("CC", "inferlab-no-such-compiler")
        assert not native.available()
        assert "no C compiler" in native.unavailable_reason()
        assert default_backend(torch.device("cpu")) == "gather"
        with pytest.raises(RuntimeError, match="not available"):
            make_backend("native", torch.device("cpu"))
    finally:
        native._state.clear()
        native._state.update(saved)
    assert default_backend(torch.device("cpu")) == "native"
    assert default_backend(torch.device("cpu"), torch.bfloat16) == "gather"
    with pytest.raises(ValueError, match="CPU fp32"):
        make_backend("native", torch.device("cpu"), torch.bfloat16)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN in this torch build")
def test_packed_linear_equals_f_linear_and_repacks_a_changed_weight():
    from inferlab.model.step_ops import PackedLinear

    gen = torch.Generator().manual_seed(4)
    linear = PackedLinear()
    weight = torch.randn(48, 40, generator=gen)
    for rows in (1, 31, 32, 33, 200, 257, 300):  # F.linear below 32 rows; padded buckets above
        x = torch.randn(rows, 40, generator=gen)
        torch.testing.assert_close(linear(x, weight), F.linear(x, weight), rtol=1e-4, atol=1e-4)
    assert [PackedLinear.bucket(n) for n in (32, 33, 256, 257, 2048)] == [32, 64, 256, 384, 2048]
    x = torch.randn(64, 40, generator=gen)
    with torch.no_grad():
        weight.mul_(-2)  # in place: the packed copy must not be reused
    torch.testing.assert_close(linear(x, weight), F.linear(x, weight), rtol=1e-4, atol=1e-4)
