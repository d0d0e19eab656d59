"""The core's algorithm conformance suite, unchanged, for RSA.

Run for the 2048-bit ids: the suite generates a key per test, and larger
moduli only change the size (covered in ``test_rsa_behaviour.py``).
"""

from __future__ import annotations

import pytest
from kmsframe_algo_rsa import RsaAlgorithm

from kmsframe.testing.conformance import AlgorithmConformance


class TestRsaAlgorithmConformance(AlgorithmConformance):
    @pytest.fixture(params=[False, True], ids=["rsa-2048", "rsa-2048-pkcs1v15"])
    def algorithm(self, request):
        return RsaAlgorithm(2048, pkcs1v15=request.param)
