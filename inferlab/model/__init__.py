"""The tiny real model: a readable Llama decoder and its HF-compatible checkpoint."""

from inferlab.model.checkpoint import build_model, ensure_checkpoint, load_checkpoint, save_checkpoint
from inferlab.model.llama import PRESETS, KVCache, LlamaConfig, LlamaForCausalLM, generate_greedy

__all__ = [
    "PRESETS", "KVCache", "LlamaConfig", "LlamaForCausalLM", "build_model", "ensure_checkpoint",
    "generate_greedy", "load_checkpoint", "save_checkpoint",
]
