"""Per-key conditions through the kms_authorize hook, and a third-party rule."""

from datetime import datetime, timezone

import pytest

import kmsframe
from kmsframe.access.conditions import ConditionsAuthorizer, in_window, validate_conditions
from kmsframe.authorization import AuthorizationRequest, Denial, Principal, request_source
from kmsframe.deployment import Deployment
from kmsframe.errors import InvalidRequest, PermissionDenied, RateLimited
from kmsframe.plugins import PluginHost
from kmsframe.testing import embedded_config

APP = Principal(id="billing", kind="app", roles=frozenset({"app"}))


@pytest.fixture
def service(deployment):
    s = deployment.service
    s.create_key("k")
    s.bind_app("k", "billing", ["encrypt", "decrypt"])
    return s


def test_source_ranges(service):
    service.set_conditions("k", {"source_ranges": ["10.0.0.0/8", "2001:db8::/32"]})
    for source, allowed in [("10.9.8.7", True), ("2001:db8::1", True), ("192.168.1.1", False),
                            (None, False), ("not-an-ip", False)]:
        token = request_source.set(source)
        try:
            if allowed:
                service.encrypt("k", b"x", principal=APP)
            else:
                with pytest.raises(PermissionDenied):
                    service.encrypt("k", b"x", principal=APP)
        finally:
            request_source.reset(token)


def test_conditions_removed_allow_again(service):
    service.set_conditions("k", {"source_ranges": ["10.0.0.0/8"]})
    with pytest.raises(PermissionDenied):
        service.encrypt("k", b"x", principal=APP)
    service.set_conditions("k", {})
    service.encrypt("k", b"x", principal=APP)


def test_rate_limit(service):
    service.set_conditions("k", {"rate_limit": {"per_second": 0.001, "burst": 3}})
    for _ in range(3):
        service.encrypt("k", b"x", principal=APP)
    with pytest.raises(RateLimited):
        service.encrypt("k", b"x", principal=APP)


def test_system_principal_bypasses_bindings_but_not_conditions(service):
    service.set_conditions("k", {"source_ranges": ["10.0.0.0/8"]})
    with pytest.raises(PermissionDenied):
        service.encrypt("k", b"x")


def _request(conditions):
    return AuthorizationRequest(principal=APP, operation="encrypt", key_name="k",
                                source="10.0.0.1", conditions=conditions)


def test_time_window_uses_the_configured_offset():
    window = {"start": "08:00", "end": "18:00", "utc_offset": "+08:00", "days": ["mon"]}
    monday_9_local = datetime(2026, 11, 30, 1, 0, tzinfo=timezone.utc).timestamp()
    assert in_window(window, monday_9_local)
    assert not in_window(window, monday_9_local + 10 * 3600)  # 19:00 local
    assert not in_window(window, monday_9_local + 86400)  # Tuesday


def test_time_window_across_midnight():
    window = {"start": "22:00", "end": "06:00"}
    base = datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp()
    assert in_window(window, base + 23 * 3600) and in_window(window, base + 3600)
    assert not in_window(window, base + 12 * 3600)


def test_time_window_denial():
    noon = datetime(2026, 12, 1, 12, tzinfo=timezone.utc).timestamp()
    judge = ConditionsAuthorizer(clock=lambda: noon)
    assert judge.kms_authorize(_request({"time_window": {"start": "08:00", "end": "18:00"}})) is None
    denial = judge.kms_authorize(_request({"time_window": {"start": "13:00", "end": "18:00"}}))
    assert isinstance(denial, Denial) and "time window" in denial.reason


def test_rate_limit_refills():
    now = [0.0]
    judge = ConditionsAuthorizer(monotonic=lambda: now[0])
    req = _request({"rate_limit": {"per_second": 1, "burst": 1}})
    assert judge.kms_authorize(req) is None
    assert judge.kms_authorize(req).code == "rate_limited"
    now[0] += 1.0
    assert judge.kms_authorize(req) is None


@pytest.mark.parametrize("bad", [
    {"source_ranges": []}, {"source_ranges": ["10.0.0.0/33"]}, {"source_ranges": "10.0.0.0/8"},
    {"time_window": {"start": "8", "end": "18:00"}},
    {"time_window": {"start": "08:00", "end": "18:00", "days": ["funday"]}},
    {"time_window": {"start": "08:00", "end": "18:00", "utc_offset": "CET"}},
    {"rate_limit": {"per_second": 0}}, {"rate_limit": {"per_second": True}}, [],
])
def test_invalid_conditions_are_refused(bad):
    with pytest.raises(InvalidRequest):
        validate_conditions(bad)


class OnlyEvenVersions:
    """A third-party rule: this plugin refuses decrypts of odd versions."""

    @kmsframe.hookimpl
    def kms_authorize(self, request):
        if request.operation == "decrypt" and request.version % 2:
            return Denial("odd versions are off limits")
        return None


def test_a_third_party_plugin_adds_its_own_rule(tmp_path):
    config = embedded_config(tmp_path / "kms")
    plugins = PluginHost()
    plugins.load_entry_points(config.plugins)
    plugins.register(OnlyEvenVersions(), "even-only")
    hsm = plugins.build_hsm(config.hsm)
    hsm.initialize()
    hsm.close()
    with Deployment.open(config, plugins=plugins) as d:
        d.service.create_key("k")
        d.service.bind_app("k", "billing", ["encrypt", "decrypt"])
        ct = d.service.encrypt("k", b"x", principal=APP).ciphertext  # 10001: odd
        with pytest.raises(PermissionDenied):
            d.service.decrypt("k", ct, principal=APP)
