"""The core's algorithm conformance suite, unchanged, for every id this plugin registers."""

from __future__ import annotations

import pytest
from kmsframe_algo_sm4 import HmacSm3, Sm4CbcHmacSm3, Sm4Gcm

from kmsframe.testing.conformance import AlgorithmConformance


class TestSm4AlgorithmConformance(AlgorithmConformance):
    @pytest.fixture(params=[Sm4Gcm(), Sm4CbcHmacSm3(), HmacSm3()], ids=lambda a: a.id)
    def algorithm(self, request):
        return request.param
