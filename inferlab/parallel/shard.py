"""Split the Llama checkpoint's tensors for each parallel strategy.

Floor 2, between `inferlab.model.checkpoint` (one full state dict, HF names) and
the strategy modules: which rows/columns of which weight a tensor-parallel rank
keeps, which layers a pipeline stage owns, which experts an expert-parallel rank
hosts. `write_shards` writes per-rank safetensors files so each rank can load
only its part (what DeepSpeed and vLLM do at start-up).

Megatron split (tensor parallel), for rank r of P:
- column-parallel (output rows split): q_proj, k_proj, v_proj, gate_proj, up_proj;
  q keeps heads [r·nh/P, (r+1)·nh/P), k/v keep KV heads [r·nkv/P, (r+1)·nkv/P), so each
  local query head still finds its GQA KV head locally;
- row-parallel (input columns split): o_proj, down_proj (their outputs are summed by all-reduce);
- replicated: embeddings, norms, lm_head.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from inferlab.model.llama import LlamaConfig

COLUMN_PARALLEL = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")
ROW_PARALLEL = ("o_proj", "down_proj")


def check_tp_degree(config: LlamaConfig, tp_size: int) -> None:
    """Raise ValueError unless `tp_size` divides the query heads, the KV heads and the MLP width."""
    if tp_size < 1:
        raise ValueError(f"tensor-parallel degree must be >= 1, got {tp_size}")
    for name, value in (("num_attention_heads", config.num_attention_heads),
                        ("num_key_value_heads", config.num_key_value_heads),
                        ("intermediate_size", config.intermediate_size)):
        if value % tp_size:
            raise ValueError(
                f"tensor-parallel degree {tp_size} does not divide {name}={value}: each rank must hold "
                f"whole heads (GQA: KV heads are split too, so tp_size must divide num_key_value_heads)"
            )


def shard_rows(weight: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank's slice of the output dimension (dim 0) of an nn.Linear weight [out, in]."""
    return weight.chunk(world_size, dim=0)[rank].contiguous()


def shard_cols(weight: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank's slice of the input dimension (dim 1) of an nn.Linear weight [out, in]."""
    return weight.chunk(world_size, dim=1)[rank].contiguous()


def tp_shard(state_dict: dict[str, torch.Tensor], config: LlamaConfig, rank: int, world_size: int
             ) -> dict[str, torch.Tensor]:
    """The tensor-parallel rank's state dict (same names, local shapes)."""
    check_tp_degree(config, world_size)
    out = {}
    for name, t in state_dict.items():
        kind = name.split(".")[-2] if name.endswith(".weight") else ""
        if kind in COLUMN_PARALLEL:
            out[name] = shard_rows(t, rank, world_size)
        elif kind in ROW_PARALLEL:
            out[name] = shard_cols(t, rank, world_size)
        else:
            out[name] = t
    return out


def balanced_ranges(total: int, num_parts: int, parts_name: str = "num_parts", total_name: str = "total") -> list[range]:
    """Split range(total) into `num_parts` contiguous ranges whose sizes differ by at most one
    (earlier parts take the remainder); the error names the caller's fields."""
    if not 1 <= num_parts <= total:
        raise ValueError(f"{parts_name} must be in [1, {total_name}={total}], got {num_parts}")
    base, extra = divmod(total, num_parts)
    ranges, start = [], 0
    for part in range(num_parts):
        size = base + (1 if part < extra else 0)
        ranges.append(range(start, start + size))
        start += size
    return ranges


def partition_layers(num_layers: int, num_stages: int) -> list[range]:
    """Contiguous, balanced layer ranges per pipeline stage (earlier stages take the remainder)."""
    return balanced_ranges(num_layers, num_stages, "num_stages", "num_layers")


def pp_shard(state_dict: dict[str, torch.Tensor], config: LlamaConfig, stage: int, num_stages: int
             ) -> dict[str, torch.Tensor]:
    """Tensors of one pipeline stage: its layers; embeddings on the first, norm and lm_head on the last."""
    layers = partition_layers(config.num_hidden_layers, num_stages)[stage]
    out = {}
    for name, t in state_dict.items():
        if name.startswith("model.layers."):
            keep = int(name.split(".")[2]) in layers
        elif name.startswith("model.embed_tokens"):
            keep = stage == 0
        else:  # model.norm, lm_head
            keep = stage == num_stages - 1
        if keep:
            out[name] = t
    return out


def expert_ranges(num_experts: int, world_size: int) -> list[range]:
    """Experts hosted by each expert-parallel rank (contiguous, equal counts)."""
    if num_experts % world_size:
        raise ValueError(f"num_experts {num_experts} is not divisible by the expert-parallel degree {world_size}")
    per = num_experts // world_size
    return [range(r * per, (r + 1) * per) for r in range(world_size)]


def write_shards(checkpoint_dir: str | Path, out_dir: str | Path, strategy: str, world_size: int,
                 config: LlamaConfig) -> list[Path]:
    """Write `rank{r}.safetensors` per rank for "tp" or "pp"; returns their paths."""
    if strategy not in ("tp", "pp"):
        raise ValueError(f"strategy must be 'tp' or 'pp', got {strategy!r}")
    full = load_file(str(Path(checkpoint_dir) / "model.safetensors"))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for rank in range(world_size):
        part = tp_shard(full, config, rank, world_size) if strategy == "tp" else pp_shard(full, config, rank, world_size)
        path = out_dir / f"rank{rank}.safetensors"
        save_file({k: v.contiguous() for k, v in part.items()}, str(path), metadata={"strategy": strategy})
        paths.append(path)
    return paths
