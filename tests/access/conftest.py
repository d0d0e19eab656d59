import pytest

from kmsframe.testing import embedded_deployment


@pytest.fixture
def deployment(tmp_path):
    d = embedded_deployment(tmp_path / "kms")
    yield d
    d.close()
