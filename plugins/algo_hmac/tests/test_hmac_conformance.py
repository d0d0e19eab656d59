"""The core's algorithm conformance suite, unchanged, for ``hmac-sha256``."""

from __future__ import annotations

import pytest
from kmsframe_algo_hmac import HmacSha256

from kmsframe.testing.conformance import AlgorithmConformance


class TestHmacAlgorithmConformance(AlgorithmConformance):
    @pytest.fixture
    def algorithm(self):
        return HmacSha256()
