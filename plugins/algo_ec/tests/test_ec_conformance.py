"""The core's algorithm conformance suite, unchanged, for ``ed25519`` and ``ecdsa-p256``."""

from __future__ import annotations

import pytest
from kmsframe_algo_ec import EcdsaP256, Ed25519

from kmsframe.testing.conformance import AlgorithmConformance


class TestEcAlgorithmConformance(AlgorithmConformance):
    @pytest.fixture(params=[Ed25519(), EcdsaP256()], ids=lambda a: a.id)
    def algorithm(self, request):
        return request.param
