"""The kit's C kernels for the CPU: built with the system's C compiler at first use, loaded with ctypes.

- `paged_decode` (csrc/paged_attention.c): decode attention that reads K/V in place from the
  paged pool, for `inferlab.model.attention.NativePagedAttention`;
- `rms_norm`, `rope_store_kv`, `silu_mul` (csrc/step_ops.c): the serving step's element-wise work
  fused into one pass each (`inferlab.model.step_ops.NativeStepOps`).
No PyTorch headers are involved (plain C files, compiled in about two seconds), so a machine with
`cc` gets the kernels and one without gets the torch paths (`unavailable_reason` says why).

The library is built once per source, flags and CPU (`-march=native`) into
`build_dir()/native/` (a temporary name, then an atomic rename: concurrent first uses are safe).
`CC` overrides the compiler.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

from inferlab.paths import build_dir

SOURCES = tuple(Path(__file__).with_name("csrc") / name for name in ("paged_attention.c", "step_ops.c"))
# -ffast-math at compile time only: vectorised expf from glibc's libmvec; the link step leaves it out so that
# crtfastmath.o (flush-to-zero for the whole process) is not linked into the library.
COMPILE_FLAGS = ("-O3", "-march=native", "-ffast-math", "-fopenmp", "-fPIC")
LINK_FLAGS = ("-shared", "-fopenmp")
LINK_LIBS = ("-lmvec", "-lm")
PORTABLE_COMPILE_FLAGS = ("-O3", "-fopenmp", "-fPIC")  # when the first set fails (no libmvec, another compiler)

_ERRORS = {1: "bad sizes", 2: "a sequence length below 1", 3: "a block table entry outside the pool"}
_lock = threading.Lock()
_state: dict = {}


def _cpu_signature() -> str:
    """What `-march=native` depends on: the CPU's model and feature flags."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    keep = [line for line in text.splitlines() if line.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(keep)))


def _compile(cc: str, target: Path, compile_flags, link_libs) -> str | None:
    """Build `SOURCES` into `target`; None on success, else the compiler's message."""
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        objs = [str(Path(tmp) / f"{src.stem}.o") for src in SOURCES]
        lib = Path(tmp) / target.name
        cmds = [[cc, "-c", *compile_flags, str(src), "-o", obj] for src, obj in zip(SOURCES, objs)]
        for cmd in cmds + [[cc, *LINK_FLAGS, *objs, "-o", str(lib), *link_libs]]:
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                return f"`{' '.join(cmd)}` failed: {proc.stderr.strip()[-400:]}"
        os.replace(lib, target)
    return None


def _build() -> tuple[ctypes.CDLL | None, str | None]:
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        return None, f"no C compiler ({cc!r} not on PATH; install gcc, or set CC)"
    parts = [*(src.read_bytes() for src in SOURCES), cc.encode(), " ".join(COMPILE_FLAGS + LINK_LIBS).encode(),
             _cpu_signature().encode()]
    key = hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]
    try:
        out_dir = build_dir() / "native"
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / f"inferlab_native-{key}.so"
        if not target.exists():
            error = _compile(cc, target, COMPILE_FLAGS, LINK_LIBS)
            if error is not None and _compile(cc, target, PORTABLE_COMPILE_FLAGS, ("-lm",)) is not None:
                return None, error
    except OSError as exc:  # an unwritable build folder, a compiler that cannot start
        return None, f"could not build the kernels: {exc}"
    try:
        lib = ctypes.CDLL(str(target))
    except OSError as exc:
        return None, f"could not load {target}: {exc}"
    i64, ptr, f32 = ctypes.c_int64, ctypes.c_void_p, ctypes.c_float
    signatures = {
        "paged_decode_f32": ([ptr, i64, ptr, ptr, ptr, i64, ptr, i64, i64, i64, i64, i64, i64, f32, ptr, i64,
                              ctypes.c_int], ctypes.c_int),
        "rms_norm_f32": ([ptr, i64, ptr, i64, ptr, i64, i64, f32, ptr, i64], None),
        "rope_store_kv_f32": ([ptr, i64, ptr, ptr, i64, i64, i64, i64, ptr, ptr, i64, ptr], ctypes.c_int),
        "silu_mul_f32": ([ptr, i64, i64, i64, ptr, i64], None),
    }
    for name, (argtypes, restype) in signatures.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, restype
    return lib, None


def _library() -> ctypes.CDLL | None:
    with _lock:
        if "lib" not in _state:
            _state["lib"], _state["reason"] = _build()
        return _state["lib"]


def available() -> bool:
    """Whether the kernels built and loaded on this machine (builds them on the first call)."""
    return _library() is not None


def unavailable_reason() -> str | None:
    """Why the kernels are not available (None when they are)."""
    _library()
    return _state["reason"]


def _check(op: str, name: str, t: torch.Tensor, dtype: torch.dtype) -> None:
    if t.device.type != "cpu" or t.dtype != dtype:
        raise ValueError(f"{op}: {name} must be a CPU {dtype} tensor, got {t.dtype} on {t.device}")


def _kernels() -> ctypes.CDLL:
    lib = _library()
    if lib is None:
        raise RuntimeError(f"the native CPU kernels are not available: {_state['reason']}")
    return lib


def paged_decode(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, block_tables: torch.Tensor,
                 seq_lens: torch.Tensor, out: torch.Tensor, scale: float | None = None) -> None:
    """Decode attention in place over the pool: row r of q [rows, nh, d] attends to the first seq_lens[r]
    slots of block table row r; writes out [rows, nh, d]. K/V pools [nkv, num_blocks, B, d] (fp32, contiguous).

    Rows may be strided (q is usually a view of the fused q/k/v projection); each row's heads must be
    contiguous. Uses torch's thread count.
    """
    lib = _kernels()
    rows, nh, d = q.shape
    nkv, num_blocks, bs, d_pool = k_pool.shape
    for name, t in (("q", q), ("out", out), ("k_pool", k_pool), ("v_pool", v_pool)):
        _check("paged_decode", name, t, torch.float32)
    for name, t in (("block_tables", block_tables), ("seq_lens", seq_lens)):
        _check("paged_decode", name, t, torch.int64)
    if d_pool != d or v_pool.shape != k_pool.shape or nh % nkv:
        raise ValueError(f"paged_decode: q {tuple(q.shape)} does not fit pools {tuple(k_pool.shape)} / "
                         f"{tuple(v_pool.shape)} (head sizes must match, query heads a multiple of KV heads)")
    if not (k_pool.is_contiguous() and v_pool.is_contiguous()):
        raise ValueError("paged_decode: k_pool and v_pool must be contiguous")
    if out.shape != q.shape:
        raise ValueError(f"paged_decode: out {tuple(out.shape)} must have q's shape {tuple(q.shape)}")
    for name, t in (("q", q), ("out", out)):
        if t.stride(2) != 1 or t.stride(1) != d:
            raise ValueError(f"paged_decode: each row of {name} must hold its heads contiguously "
                             f"(strides {t.stride()})")
    if block_tables.dim() != 2 or block_tables.shape[0] < rows or block_tables.stride(1) != 1:
        raise ValueError(f"paged_decode: block_tables must be [>= {rows}, max_blocks] with contiguous rows, "
                         f"got {tuple(block_tables.shape)} strides {block_tables.stride()}")
    if seq_lens.shape != (rows,) or not seq_lens.is_contiguous():
        raise ValueError(f"paged_decode: seq_lens must be a contiguous [{rows}] tensor, got {tuple(seq_lens.shape)}")
    if rows == 0:
        return
    lens = seq_lens.tolist()
    if min(lens) < 1 or max(lens) > block_tables.shape[1] * bs:
        raise ValueError(f"paged_decode: seq_lens must lie in [1, {block_tables.shape[1] * bs}] "
                         f"(the block tables' capacity), got {min(lens)}..{max(lens)}")
    rc = lib.paged_decode_f32(q.data_ptr(), q.stride(0), k_pool.data_ptr(), v_pool.data_ptr(), block_tables.data_ptr(),
                              block_tables.stride(0), seq_lens.data_ptr(), rows, nh, nkv, d, bs, num_blocks,
                              d ** -0.5 if scale is None else scale, out.data_ptr(), out.stride(0),
                              torch.get_num_threads())
    if rc != 0:
        raise ValueError(f"paged_decode: {_ERRORS.get(rc, f'error {rc}')}; nothing was read")


def _rows(op: str, name: str, t: torch.Tensor, width: int) -> None:
    """t must be a CPU fp32 matrix [rows, width] whose rows are contiguous."""
    _check(op, name, t, torch.float32)
    if t.dim() != 2 or t.shape[1] != width or t.stride(1) != 1:
        raise ValueError(f"{op}: {name} must be [rows, {width}] with contiguous rows, got {tuple(t.shape)} "
                         f"strides {t.stride()}")


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None) -> torch.Tensor:
    """x [rows, h] / rms * weight, one pass; with `residual` [rows, h]: residual += x first (in place) and the
    norm is of the sum (the pre-norm block's add and norm together). Returns a new [rows, h] tensor."""
    lib = _kernels()
    rows, h = x.shape
    _rows("rms_norm", "x", x, h)
    _check("rms_norm", "weight", weight, torch.float32)
    if weight.shape != (h,) or not weight.is_contiguous():
        raise ValueError(f"rms_norm: weight must be a contiguous [{h}], got {tuple(weight.shape)}")
    out = torch.empty(rows, h, dtype=torch.float32)
    res_ptr, res_row = None, 0
    if residual is not None:
        _rows("rms_norm", "residual", residual, h)
        if residual.shape[0] != rows:
            raise ValueError(f"rms_norm: residual has {residual.shape[0]} rows, x {rows}")
        res_ptr, res_row = residual.data_ptr(), residual.stride(0)
    lib.rms_norm_f32(x.data_ptr(), x.stride(0), res_ptr, res_row, weight.data_ptr(), rows, h, eps, out.data_ptr(), h)
    return out


def rope_store_kv(qkv: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, num_heads: int, num_kv_heads: int,
                  k_pool: torch.Tensor, v_pool: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    """Rotate the q and k heads of qkv [n, (nh + 2 nkv) * d] in place (cos, sin [n, d]), then store each token's
    k and v in its pool slot (pools [nkv, num_blocks, B, d], contiguous)."""
    lib = _kernels()
    n = qkv.shape[0]
    nkv, d = k_pool.shape[0], k_pool.shape[-1]
    _rows("rope_store_kv", "qkv", qkv, (num_heads + 2 * num_kv_heads) * d)
    for name, t in (("cos", cos), ("sin", sin)):
        _check("rope_store_kv", name, t, torch.float32)
        if t.shape != (n, d) or not t.is_contiguous():
            raise ValueError(f"rope_store_kv: {name} must be a contiguous [{n}, {d}], got {tuple(t.shape)}")
    for name, t in (("k_pool", k_pool), ("v_pool", v_pool)):
        _check("rope_store_kv", name, t, torch.float32)
        if not t.is_contiguous() or t.shape != k_pool.shape or nkv != num_kv_heads:
            raise ValueError(f"rope_store_kv: {name} must be a contiguous [{num_kv_heads}, blocks, B, {d}], "
                             f"got {tuple(t.shape)}")
    _check("rope_store_kv", "slot_mapping", slot_mapping, torch.int64)
    if slot_mapping.shape != (n,) or not slot_mapping.is_contiguous():
        raise ValueError(f"rope_store_kv: slot_mapping must be a contiguous [{n}], got {tuple(slot_mapping.shape)}")
    num_slots = k_pool.numel() // (nkv * d)
    rc = lib.rope_store_kv_f32(qkv.data_ptr(), qkv.stride(0), cos.data_ptr(), sin.data_ptr(), n, num_heads, nkv, d,
                               k_pool.data_ptr(), v_pool.data_ptr(), num_slots, slot_mapping.data_ptr())
    if rc != 0:
        problem = "an odd head size" if rc == 1 else f"a slot outside the pool [0, {num_slots})"
        raise ValueError(f"rope_store_kv: {problem}; nothing was written")


def silu_mul(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up of gate_up [rows, 2m] (gate the first half): a new [rows, m] tensor."""
    lib = _kernels()
    rows, two_m = gate_up.shape
    _rows("silu_mul", "gate_up", gate_up, two_m)
    out = torch.empty(rows, two_m // 2, dtype=torch.float32)
    lib.silu_mul_f32(gate_up.data_ptr(), gate_up.stride(0), rows, two_m // 2, out.data_ptr(), two_m // 2)
    return out
