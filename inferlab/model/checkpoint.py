"""Save and load a Hugging Face-compatible checkpoint directory of the Llama model.

Layout: config.json, generation_config.json, model.safetensors and the byte-level
tokenizer. `transformers`' LlamaForCausalLM, vLLM and DeepSpeed load the same files.
`ensure_checkpoint(preset)` builds a random-init checkpoint once (fixed seed, no
downloads) under the build folder and returns its path.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from inferlab.hardware import default_device
from inferlab.model.llama import PRESETS, LlamaConfig, LlamaForCausalLM, init_weights
from inferlab.model.tokenizer import save_tokenizer
from inferlab.paths import build_dir

DEFAULT_SEED = 1234
_FIELDS = tuple(LlamaConfig.__dataclass_fields__)


def hf_config(config: LlamaConfig, dtype: str = "float32") -> dict:
    """config.json contents in Hugging Face's Llama schema."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        **config.to_dict(),
        "head_dim": config.head_dim,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "use_cache": True,
        "rope_scaling": None,
        "torch_dtype": dtype,
    }


def save_checkpoint(model: LlamaForCausalLM, directory: str | Path) -> Path:
    """Write the model (fp32 safetensors), its config and the tokenizer to `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    (directory / "config.json").write_text(json.dumps(hf_config(cfg), indent=2))
    generation = {"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id, "do_sample": False}
    (directory / "generation_config.json").write_text(json.dumps(generation, indent=2))
    # clone: the serving step's fused projections make q/k/v (gate/up) views of one tensor, which safetensors refuses
    tensors = {name: t.detach().to("cpu", torch.float32).clone(memory_format=torch.contiguous_format)
               for name, t in model.state_dict().items()}
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    save_tokenizer(directory)
    return directory


def load_config(directory: str | Path) -> LlamaConfig:
    raw = json.loads((Path(directory) / "config.json").read_text())
    return LlamaConfig(**{k: raw[k] for k in _FIELDS if k in raw})


def load_checkpoint(
    directory: str | Path, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> LlamaForCausalLM:
    """Load a checkpoint directory into `LlamaForCausalLM` on `device` (default: CUDA if present)."""
    directory = Path(directory)
    model = LlamaForCausalLM(load_config(directory))
    model.load_state_dict(load_file(str(directory / "model.safetensors")))
    return model.to(device=device or default_device(), dtype=dtype).eval()


def build_model(preset: str = "tiny", seed: int = DEFAULT_SEED) -> LlamaForCausalLM:
    """A random-init model of a preset (`tiny` or `small`), on CPU, fp32."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    model = LlamaForCausalLM(PRESETS[preset])
    init_weights(model, seed)
    return model.eval()


def ensure_checkpoint(preset: str = "tiny", seed: int = DEFAULT_SEED, root: Path | None = None) -> Path:
    """Path of the preset's checkpoint, building it on first use (deterministic)."""
    directory = (root or build_dir() / "models") / (preset if seed == DEFAULT_SEED else f"{preset}-seed{seed}")
    if not (directory / "model.safetensors").exists():
        tmp = directory.with_name(directory.name + ".tmp")
        save_checkpoint(build_model(preset, seed), tmp)
        tmp.replace(directory) if not directory.exists() else None
    return directory
