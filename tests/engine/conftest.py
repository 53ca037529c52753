"""Shared fixtures: the tiny model and a cache of single-request greedy references."""

import pytest
import torch

from inferlab.model import build_model, generate_greedy


@pytest.fixture(scope="session")
def tiny_model():
    torch.manual_seed(0)
    return build_model("tiny")


@pytest.fixture(scope="session")
def greedy_ref(tiny_model):
    """greedy_ref(prompt, max_tokens) -> the tokens `generate_greedy` gives for the request alone."""
    cache: dict = {}

    def ref(prompt, max_tokens):
        key = (tuple(prompt), max_tokens)
        if key not in cache:
            cache[key] = generate_greedy(tiny_model, list(prompt), max_tokens)
        return cache[key]

    return ref


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny model's ops are too small to gain from 2 threads, and on a shared CI box the
    OpenMP barrier of a second thread can make each step 10x slower; restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
