"""assistant.settings: demo by default, real LG hosts by region and phase, clear errors."""

from __future__ import annotations

import pytest

from assistant.settings import SettingsError, load_settings, thinq_base_url


def test_nothing_configured_means_demo_mode_on_the_simulator(tmp_path):
    settings = load_settings({"STATE_DIR": str(tmp_path)})
    assert settings.demo_mode
    assert settings.thinq.base_url == "http://127.0.0.1:8700"
    assert settings.demo_thinq_token and len(settings.demo_thinq_token) == 96
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    # The generated demo credentials are stable across processes.
    again = load_settings({"STATE_DIR": str(tmp_path)})
    assert again.thinq.service_key == settings.thinq.service_key
    assert (tmp_path / "demo-credentials.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("region", "phase", "url"),
    [
        ("kic", "OP", "https://kic-ext.lgthinq.com"),
        ("EIC", "QA", "https://eic-qa-ext.lgthinq.com"),
        ("aic", "op", "https://aic-ext.lgthinq.com"),
    ],
)
def test_lg_hosts_by_region_and_phase(region, phase, url):
    assert thinq_base_url(region, phase) == url


def test_real_mode_uses_lg_and_keeps_secrets_out_of_repr(tmp_path):
    settings = load_settings(
        {
            "STATE_DIR": str(tmp_path),
            "THINQ_SERVICE_ID": "470ae4c534ba143cad86e5c3",
            "THINQ_SERVICE_KEY": "service-key-value",
            "THINQ_REGION": "eic",
            "THINQ_COUNTRY": "de",
            "TOKEN_ENCRYPTION_KEY": "k",
        }
    )
    assert not settings.demo_mode
    assert settings.thinq.base_url == "https://eic-ext.lgthinq.com"
    assert settings.thinq.default_country == "DE"
    assert settings.demo_thinq_token is None
    assert "service-key-value" not in repr(settings)


@pytest.mark.parametrize(
    "env",
    [
        {"DEMO_MODE": "0"},
        {"THINQ_SERVICE_ID": "x", "THINQ_SERVICE_KEY": "y", "THINQ_REGION": "mars"},
        {"THINQ_COUNTRY": "USA"},
        {"THINQ_TIMEOUT_SECONDS": "-1"},
        {"DEMO_MODE": "maybe"},
    ],
)
def test_bad_configuration_is_refused_with_a_reason(tmp_path, env):
    with pytest.raises(SettingsError):
        load_settings({"STATE_DIR": str(tmp_path), **env})
