"""SIGINT and SIGTERM raise Interrupted at once, or, inside a deferred block, only where stopping is safe."""

from __future__ import annotations

import signal

import pytest

from pneumo_batch.errors import Interrupted
from pneumo_batch.interruptions import deferred, raise_if_stopped, raising_on_signals


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_raises_interrupted_where_the_main_thread_is(number):
    reached = False
    with raising_on_signals(), pytest.raises(Interrupted) as stop:
        signal.raise_signal(number)
        reached = True
    assert stop.value.signal_number == number and not reached


def test_inside_a_deferred_block_the_signal_is_raised_when_the_block_ends():
    steps = []
    with raising_on_signals(), pytest.raises(Interrupted) as stop:
        with deferred():
            signal.raise_signal(signal.SIGTERM)
            steps.append("after the signal")
            with deferred():  # nested: only the outermost block raises
                steps.append("inner block")
            steps.append("end of the block")
        steps.append("after the block")
    assert steps == ["after the signal", "inner block", "end of the block"]
    assert stop.value.signal_number == signal.SIGTERM


def test_a_deferred_block_stops_at_its_safe_point():
    done = []
    with raising_on_signals(), pytest.raises(Interrupted), deferred():
        for step in range(5):
            if step == 2:
                signal.raise_signal(signal.SIGINT)
            done.append(step)
            raise_if_stopped()
    assert done == [0, 1, 2]


def test_a_block_that_fails_after_the_signal_ends_as_interrupted():
    with raising_on_signals(), pytest.raises(Interrupted) as stop, deferred():
        signal.raise_signal(signal.SIGTERM)
        raise EOFError("a pipe closed by the same signal")
    assert isinstance(stop.value.__context__, EOFError)


def test_without_a_signal_nothing_is_raised_and_the_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with raising_on_signals(), deferred():
        raise_if_stopped()
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
