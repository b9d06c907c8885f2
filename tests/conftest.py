"""Shared fixtures: tiny components built in code (nothing is downloaded)."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_pipe():
    from model.tiny import tiny_pipeline

    return tiny_pipeline(seed=0)


@pytest.fixture
def two_subject_refs():
    red = np.zeros((32, 32, 3), np.uint8)
    red[8:24, 8:24] = (220, 30, 30)
    blue = np.full((40, 28, 3), 240, np.uint8)
    blue[10:30, 5:20] = (30, 30, 220)
    return {"s1": [red], "s2": [blue]}
