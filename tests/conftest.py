"""Suite-wide settings: fast mode, no network, Ray kept local and quiet."""

import os

os.environ.setdefault("INFERLAB_FAST", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
