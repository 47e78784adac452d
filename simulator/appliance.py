"""How each appliance type reacts to commands and to the passing of (simulated) time.

Every behaviour works on a ``DeviceState`` copy: ``apply`` either finishes the
whole command or raises ``ThinQError`` (the caller then drops the copy, so a
refused command changes nothing). ``advance`` moves running appliances on by
some simulated seconds and returns the push codes their progress produced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.errors import ThinQError
from simulator.household import DeviceState
from simulator.profile import Write

STATE = "runState.currentState"
REMOTE = "remoteControlEnable.remoteControlEnabled"
REMAIN_H = "timer.remainHour"
REMAIN_M = "timer.remainMinute"
DELAY_H = "timer.relativeHourToStart"

# Cycle lengths in minutes used when a cycle starts afresh (our data, not LG's).
CYCLE_MINUTES: dict[str, int] = {
    "DEVICE_WASHER": 45,
    "DEVICE_DRYER": 50,
    "DEVICE_STYLER": 35,
    "DEVICE_DISH_WASHER": 70,
}
# Push code sent when a cycle ends (see household.json notes for which are assumptions).
COMPLETION_PUSH: dict[str, str] = {
    "DEVICE_WASHER": "WASHING_IS_COMPLETE",
    "DEVICE_DRYER": "DRYING_IS_COMPLETE",
    "DEVICE_STYLER": "STYLING_IS_COMPLETE",
    "DEVICE_DISH_WASHER": "DISHWASHING_IS_COMPLETE",
}
OVEN_PREHEAT_SECONDS = 10 * 60


def _minutes_left(seconds: float) -> int:
    """Whole minutes shown for a countdown: 44.5 minutes left still reads 45."""
    return max(0, math.ceil(round(seconds, 3) / 60))


def _hours_left(seconds: float) -> int:
    return max(0, math.ceil(round(seconds, 3) / 3600))


class Behaviour:
    """Default: store every readable property written; time does nothing."""

    def apply(self, state: DeviceState, writes: list[Write]) -> None:
        for write in writes:
            if write.spec.readable:
                state.set(write.spec.key, write.value)

    def advance(self, state: DeviceState, seconds: float) -> list[str]:
        return []

    def sync(self, state: DeviceState) -> None:
        """Rebuild runtime counters from the status (after reset or a /sim state edit)."""


@dataclass
class CycleBehaviour(Behaviour):
    """Washer, dryer, styler, dishwasher: START/STOP/POWER_OFF/WAKE_UP and a countdown."""

    op_key: str  # e.g. "operation.washerOperationMode"
    cycle_minutes: int
    completion_push: str

    IDLE = ("INITIAL", "END", "PAUSE", "COMPLETE")
    ACTIVE = ("RUNNING", "RESERVED")

    def apply(self, state: DeviceState, writes: list[Write]) -> None:
        ops = [w for w in writes if w.spec.key == self.op_key]
        others = [w for w in writes if w.spec.key != self.op_key]
        current = state.get(STATE)
        if others:
            # Settings (only the delay-start hours today) need a powered, remote-enabled
            # machine and cannot change under a cycle that is already going.
            if not state.get(REMOTE):
                raise ThinQError("2301", "remote control is disabled on the appliance")
            if current == "POWER_OFF":
                raise ThinQError("2304", "the appliance is powered off")
            if any(w.spec.key == DELAY_H for w in others) and current in self.ACTIVE:
                raise ThinQError("2302", f"the start delay cannot change while {current}")
            super().apply(state, others)
        for op in ops:
            self._command(state, op.value)

    def _command(self, state: DeviceState, command: str) -> None:
        current = state.get(STATE)
        if command == "START":
            if not state.get(REMOTE):
                raise ThinQError("2301", "remote control is disabled on the appliance")
            if current == "POWER_OFF":
                raise ThinQError("2304", "the appliance is powered off")
            if current not in self.IDLE:
                raise ThinQError("2302", f"START is not possible while {current}")
            runtime = state.runtime
            if current != "PAUSE" or runtime.remaining_s <= 0:
                runtime.remaining_s = self.cycle_minutes * 60.0
            self._show_remaining(state)
            delay_h = state.get(DELAY_H) if state.has(DELAY_H) else 0
            if delay_h > 0:
                runtime.reserve_s = delay_h * 3600.0
                state.set(STATE, "RESERVED")
            else:
                runtime.reserve_s = 0.0
                state.set(STATE, "RUNNING")
        elif command == "STOP":
            if current not in self.ACTIVE:
                raise ThinQError("2302", f"STOP is not possible while {current}")
            state.set(STATE, "PAUSE")  # remaining and reserve counters are kept for a resume
        elif command == "POWER_OFF":
            state.set(STATE, "POWER_OFF")
            state.runtime.remaining_s = state.runtime.reserve_s = 0.0
            self._show_remaining(state)
            if state.has(DELAY_H):
                state.set(DELAY_H, 0)
        elif command == "WAKE_UP":
            if current != "POWER_OFF":
                raise ThinQError("2302", f"WAKE_UP is only possible from POWER_OFF, not {current}")
            state.set(STATE, "INITIAL")
        else:  # the profile's enum let through a command we do not model
            raise ThinQError("2207", f"command {command} is not supported")

    def _show_remaining(self, state: DeviceState) -> None:
        if state.has(REMAIN_H):
            hours, minutes = divmod(_minutes_left(state.runtime.remaining_s), 60)
            state.set(REMAIN_H, hours)
            state.set(REMAIN_M, minutes)

    def advance(self, state: DeviceState, seconds: float) -> list[str]:
        pushes: list[str] = []
        runtime = state.runtime
        while seconds > 0:
            current = state.get(STATE)
            if current == "RESERVED":
                if runtime.reserve_s <= seconds:
                    seconds -= runtime.reserve_s
                    runtime.reserve_s = 0.0
                    state.set(STATE, "RUNNING")
                else:
                    runtime.reserve_s -= seconds
                    seconds = 0
                if state.has(DELAY_H):
                    state.set(DELAY_H, _hours_left(runtime.reserve_s))
            elif current == "RUNNING":
                if runtime.remaining_s <= seconds:
                    runtime.remaining_s = 0.0
                    self._show_remaining(state)
                    state.set(STATE, "END")
                    pushes.append(self.completion_push)
                    break
                runtime.remaining_s -= seconds
                seconds = 0
                self._show_remaining(state)
            else:
                break
        return pushes

    def sync(self, state: DeviceState) -> None:
        runtime = state.runtime
        if state.has(REMAIN_H):
            runtime.remaining_s = (state.get(REMAIN_H) * 60 + state.get(REMAIN_M)) * 60.0
        current = state.get(STATE)
        if current in self.ACTIVE and runtime.remaining_s <= 0:
            # A cycle forced to RUNNING with no time left would end at once; give it a cycle.
            runtime.remaining_s = self.cycle_minutes * 60.0
            self._show_remaining(state)
        delay_h = state.get(DELAY_H) if state.has(DELAY_H) else 0
        runtime.reserve_s = delay_h * 3600.0 if current == "RESERVED" else 0.0


@dataclass
class OvenBehaviour(Behaviour):
    """START preheats (10 simulated minutes, then PREHEATING_IS_DONE); STOP pauses."""

    op_key: str = "operation.ovenOperationMode"

    BUSY = ("PREHEATING", "PREHEATING_IS_DONE", "COOKING_IN_PROGRESS")

    def apply(self, state: DeviceState, writes: list[Write]) -> None:
        ops = [w for w in writes if w.spec.key == self.op_key]
        # Cook mode and target temperature may change at any time, even mid-cook.
        super().apply(state, [w for w in writes if w.spec.key != self.op_key])
        for op in ops:
            current = state.get(STATE)
            if op.value == "START":
                if not state.get(REMOTE):
                    raise ThinQError("2301", "remote control is disabled on the oven")
                if current in self.BUSY or current in ("CLEANING", "ERROR"):
                    raise ThinQError("2302", f"START is not possible while {current}")
                if current != "PAUSE" or state.runtime.preheat_s <= 0:
                    state.runtime.preheat_s = float(OVEN_PREHEAT_SECONDS)
                state.set(STATE, "PREHEATING")
            elif op.value == "STOP":
                if current not in self.BUSY:
                    raise ThinQError("2302", f"STOP is not possible while {current}")
                state.set(STATE, "PAUSE")
            else:
                raise ThinQError("2207", f"command {op.value} is not supported")

    def advance(self, state: DeviceState, seconds: float) -> list[str]:
        if state.get(STATE) != "PREHEATING":
            return []
        state.runtime.preheat_s -= seconds
        if state.runtime.preheat_s > 0:
            return []
        state.runtime.preheat_s = 0.0
        state.set(STATE, "PREHEATING_IS_DONE")
        return ["PREHEATING_IS_COMPLETE"]

    def sync(self, state: DeviceState) -> None:
        preheating = state.get(STATE) == "PREHEATING"
        state.runtime.preheat_s = float(OVEN_PREHEAT_SECONDS) if preheating else 0.0


@dataclass
class PoweredBehaviour(Behaviour):
    """Air conditioner, air purifier: nothing but the power switch works while off.

    A body that switches the power on may carry settings too; they are judged
    against the power state the body leaves behind.
    """

    op_key: str

    def apply(self, state: DeviceState, writes: list[Write]) -> None:
        power = next((w.value for w in writes if w.spec.key == self.op_key), state.get(self.op_key))
        if power == "POWER_OFF" and any(w.spec.key != self.op_key for w in writes):
            raise ThinQError("2304", "the appliance is powered off")
        super().apply(state, writes)


@dataclass
class SabbathBehaviour(Behaviour):
    """Refrigerator: in sabbath mode only sabbath mode itself may be changed."""

    sabbath_key: str = "sabbath.sabbathMode"

    def apply(self, state: DeviceState, writes: list[Write]) -> None:
        sabbath = next(
            (w.value for w in writes if w.spec.key == self.sabbath_key), state.get(self.sabbath_key)
        )
        if sabbath and any(w.spec.key != self.sabbath_key for w in writes):
            raise ThinQError("2305", "the refrigerator is in sabbath mode")
        super().apply(state, writes)


def behaviour_for(device_type: str) -> Behaviour:
    if device_type in CYCLE_MINUTES:
        op_name = {
            "DEVICE_WASHER": "washerOperationMode",
            "DEVICE_DRYER": "dryerOperationMode",
            "DEVICE_STYLER": "stylerOperationMode",
            "DEVICE_DISH_WASHER": "dishWasherOperationMode",
        }[device_type]
        return CycleBehaviour(
            op_key=f"operation.{op_name}",
            cycle_minutes=CYCLE_MINUTES[device_type],
            completion_push=COMPLETION_PUSH[device_type],
        )
    if device_type == "DEVICE_OVEN":
        return OvenBehaviour()
    if device_type == "DEVICE_AIR_CONDITIONER":
        return PoweredBehaviour(op_key="operation.airConOperationMode")
    if device_type == "DEVICE_AIR_PURIFIER":
        return PoweredBehaviour(op_key="operation.airPurifierOperationMode")
    if device_type == "DEVICE_REFRIGERATOR":
        return SabbathBehaviour()
    return Behaviour()
