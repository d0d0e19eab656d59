"""The core's algorithm conformance suite, unchanged, for ``sm2``."""

from __future__ import annotations

import pytest
from kmsframe_algo_sm2 import Sm2

from kmsframe.testing.conformance import AlgorithmConformance


class TestSm2AlgorithmConformance(AlgorithmConformance):
    @pytest.fixture
    def algorithm(self):
        return Sm2()
