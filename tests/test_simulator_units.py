"""Unit and property tests of the simulator's pieces (no HTTP)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.clock import SimClock
from simulator.config import SimulatorConfig, config_from_env
from simulator.errors import ERRORS, ThinQError
from simulator.household import PROFILE_DIR, Household
from simulator.jsonbody import BadJson, loads
from simulator.profile import Profile, check_value

RANGES = [(18, 30, 0.5), (1, 7, 1), (-23, -15, 1), (50, 250, 5), (0, 19, 1)]


def accepted_by_oracle(value: Fraction, low: float, high: float, step: float) -> bool:
    low_f, high_f, step_f = Fraction(str(low)), Fraction(str(high)), Fraction(str(step))
    return low_f <= value <= high_f and ((value - low_f) / step_f).denominator == 1


numbers = st.one_of(
    st.integers(min_value=-300, max_value=300),
    st.decimals(min_value=-300, max_value=300, places=2).map(float),
    st.floats(min_value=-300, max_value=300, allow_nan=False),
)


@given(spec=st.sampled_from(RANGES), value=numbers)
def test_range_value_accepted_iff_in_bounds_and_on_the_step_grid(
    spec: tuple[float, float, float], value: float
) -> None:
    low, high, step = spec
    problem = check_value("range", {"min": low, "max": high, "step": step}, value)
    expected = accepted_by_oracle(Fraction(repr(value)), low, high, step)
    assert (problem is None) == expected, (spec, value, problem)


@given(value=numbers)
def test_ac_target_temperature_control_body(value: float) -> None:
    profile = Profile.load(PROFILE_DIR / "air_conditioner.json")
    body = {"temperatureInUnits": {"targetTemperatureC": value}}
    expected = accepted_by_oracle(Fraction(repr(value)), 18, 30, 0.5)
    try:
        writes = profile.parse_control(body)
    except ThinQError as error:
        assert not expected
        assert error.code == "1102"
    else:
        assert expected
        assert writes[0].value == value


@given(value=st.one_of(st.booleans(), st.text(max_size=5), st.none(), st.lists(st.integers())))
def test_non_numbers_never_fit_a_range(value: object) -> None:
    assert check_value("range", {"min": 0, "max": 1, "step": 1}, value) is not None


def test_decimal_json_is_exact_on_the_grid() -> None:
    profile = Profile.load(PROFILE_DIR / "air_conditioner.json")
    body = loads(b'{"temperatureInUnits": {"targetTemperatureC": 22.50}}')
    assert profile.parse_control(body)[0].value == 22.5
    with pytest.raises(ThinQError):
        profile.parse_control(loads(b'{"temperatureInUnits": {"targetTemperatureC": 22.3}}'))


@pytest.mark.parametrize("raw", [b"NaN", b"[Infinity]", b"{", b"\xff", b"1" * 5000])
def test_loads_refuses_non_json(raw: bytes) -> None:
    with pytest.raises(BadJson):
        loads(raw)


def test_error_table_statuses() -> None:
    assert ERRORS["1222"] == ("NOT_CONNECTED_DEVICE", "Not connected device", 400)
    expected = {
        "1101": 400,
        "1102": 400,
        "1103": 400,
        "1104": 400,
        "1203": 401,
        "1301": 401,
        "1302": 401,
        "1205": 404,
        "1212": 404,
        "1206": 400,
        "1207": 400,
        "1214": 400,
        "1311": 400,
        "2205": 400,
        "2207": 400,
        "2301": 400,
        "2302": 400,
        "2304": 400,
        "2305": 400,
        "0000": 500,
        "2000": 500,
    }
    for code, status in expected.items():
        assert ERRORS[code][2] == status, code
    assert all(len(code) == 4 and code.isdigit() for code in ERRORS)
    assert (
        ThinQError("1101", "header x is missing").message
        == "Missing parameters: header x is missing"
    )


def test_clock_is_scaled_real_time_plus_advances() -> None:
    now = [100.0]
    clock = SimClock(60, monotonic=lambda: now[0])
    assert clock.now() == 0
    now[0] += 2
    assert clock.now() == 120
    clock.advance(30)
    assert clock.now() == 150
    with pytest.raises(ValueError):
        clock.advance(-1)
    frozen = SimClock(0, monotonic=lambda: now[0])
    now[0] += 1000
    assert frozen.now() == 0


def test_household_ids_are_stable_literals() -> None:
    household = Household.load()
    raw = json.loads((PROFILE_DIR.parent / "household.json").read_text())
    literal_ids = [d["deviceId"] for u in raw["users"] for d in u["devices"]]
    assert [d.device_id for d in household.all()] == literal_ids
    assert household.demo_devices()[0].alias == "Fridge"
    assert [d.alias for d in household.owned_by("neighbour")] == ["Neighbour AC"]


def test_every_profile_property_is_well_formed() -> None:
    for path in PROFILE_DIR.glob("*.json"):
        profile = Profile.load(path)
        assert set(profile.doc) == {"property", "notification", "error"}, path
        for spec in profile.specs.values():
            assert spec.type in {"enum", "range", "boolean", "number"}, spec.key
            assert spec.mode in {("r",), ("w",), ("r", "w")}, spec.key
            if spec.type != "number":
                assert set(spec.value) == set(spec.mode), spec.key


def test_config_from_env_falls_back_to_demo_credentials(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ["SIM_HOST", "SIM_PORT", "SIM_TIME_SCALE", "SIM_CALLBACK_URL", "SIM_SERVICE_ID"]:
        monkeypatch.delenv(name, raising=False)
    for name in ["SIM_SERVICE_KEY", "SIM_DEMO_TOKEN", "SIM_NEIGHBOUR_TOKEN", "SIM_TICK_SECONDS"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STATE_DIR", str(tmp_path))
    config = config_from_env()
    stored = json.loads((tmp_path / "demo-credentials.json").read_text())
    assert (config.host, config.port, config.time_scale) == ("127.0.0.1", 8700, 60.0)
    assert config.callback_url is None
    assert config.service_id == stored["service_id"]
    assert config.service_key == stored["service_key"]
    assert config.tokens == {stored["demo_token"]: "demo"}
    assert stored["service_key"] not in repr(config)
    assert stored["demo_token"] not in repr(config)


def test_config_from_env_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STATE_DIR", str(tmp_path))
    monkeypatch.setenv("SIM_HOST", "0.0.0.0")
    monkeypatch.setenv("SIM_PORT", "9000")
    monkeypatch.setenv("SIM_TIME_SCALE", "1")
    monkeypatch.setenv("SIM_CALLBACK_URL", "http://127.0.0.1:5005/lg/callback")
    monkeypatch.setenv("SIM_SERVICE_ID", "svc")
    monkeypatch.setenv("SIM_SERVICE_KEY", "key")
    monkeypatch.setenv("SIM_DEMO_TOKEN", "tok")
    monkeypatch.setenv("SIM_NEIGHBOUR_TOKEN", "ntok")
    config = config_from_env()
    assert (config.host, config.port, config.time_scale) == ("0.0.0.0", 9000, 1.0)
    assert config.callback_url == "http://127.0.0.1:5005/lg/callback"
    assert (config.service_id, config.service_key) == ("svc", "key")
    assert config.tokens == {"tok": "demo", "ntok": "neighbour"}
    assert not (tmp_path / "demo-credentials.json").exists()  # nothing needed from disk
    monkeypatch.setenv("SIM_TIME_SCALE", "fast")
    with pytest.raises(ValueError, match="SIM_TIME_SCALE"):
        config_from_env()


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        SimulatorConfig(service_id="s", service_key="k", tokens={}, time_scale=-1)
    with pytest.raises(ValueError):
        SimulatorConfig(service_id="", service_key="k", tokens={})


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["START", "STOP", "POWER_OFF", "WAKE_UP", "FRIDGE", "HIGH", "COOL"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
resource_names = st.sampled_from(
    ["operation", "timer", "temperatureInUnits", "refrigeration", "airFlow", "runState", "x"]
)
control_bodies = st.dictionaries(
    resource_names,
    st.dictionaries(
        st.sampled_from(
            [
                "locationName",
                "targetTemperatureC",
                "expressMode",
                "windStrength",
                "relativeHourToStart",
                "washerOperationMode",
                "airConOperationMode",
                "currentState",
            ]
        ),
        json_values,
        max_size=3,
    )
    | json_values,
    max_size=3,
)


@settings(deadline=None)
@given(alias=st.sampled_from(["Fridge", "Washer", "Bedroom AC", "Oven"]), body=control_bodies)
def test_control_only_ever_fails_with_a_thinq_error(alias: str, body: object) -> None:
    from simulator.cloud import SimulatedCloud

    cloud = SimulatedCloud(
        SimulatorConfig(service_id="s", service_key="k", tokens={"t": "demo"}, time_scale=0)
    )
    device = next(d for d in cloud.household.all() if d.alias == alias)
    before = device.state.copy()
    try:
        cloud.control(device, body)
    except ThinQError:
        assert device.state.status == before.status  # refused: nothing changed
    cloud.clock.advance(3600)
    cloud.tick()


@settings(deadline=None)
@given(
    values=st.dictionaries(
        st.sampled_from(["runState.currentState", "timer.remainHour", "x"]), json_values
    )
)
def test_sim_state_only_ever_fails_with_a_reason(values: dict[str, object]) -> None:
    from simulator.cloud import SimulatedCloud

    cloud = SimulatedCloud(
        SimulatorConfig(service_id="s", service_key="k", tokens={"t": "demo"}, time_scale=0)
    )
    washer = next(d for d in cloud.household.all() if d.alias == "Washer")
    problem = cloud.set_state(washer, values)
    assert problem is None or isinstance(problem, str)
    cloud.clock.advance(3600)
    cloud.tick()
