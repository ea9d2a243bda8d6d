"""Fixtures of the training tests."""

import pytest
from train_files import TINY_DATA_CONFIG


@pytest.fixture(scope="module")
def tiny_dataset():
    """The dataset of :func:`train_files.tiny_config`, built once per test module."""
    return TINY_DATA_CONFIG.build()
