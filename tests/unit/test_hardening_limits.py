"""The write timeout's sweep (hub/limits.py StalledWrites, #17 item 6), with fake connections and an explicit clock."""

from __future__ import annotations

from sluice.hub.limits import StalledWrites


class FakeTransport:
    def __init__(self, queued: int) -> None:
        self.queued = queued
        self.aborted = False

    def get_write_buffer_size(self) -> int:
        return self.queued

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


class FakeHandler:
    def __init__(self, queued: int) -> None:
        self.transport = FakeTransport(queued)


def test_hardening_stalled_writes_cut_only_clients_that_take_nothing() -> None:
    stalled, steady, idle = FakeHandler(4 << 20), FakeHandler(4 << 20), FakeHandler(0)
    gone = FakeHandler(100)
    gone.transport = None  # type: ignore[assignment]
    conns = [stalled, steady, idle, gone]
    sweep = StalledWrites(lambda: conns, write_timeout=10.0)
    for now in range(0, 11):
        steady.transport.queued -= 1000  # a slow reader that keeps taking bytes
        sweep.sweep(float(now))
    assert not stalled.transport.aborted and not steady.transport.aborted  # exactly the timeout: not yet
    sweep.sweep(10.5)
    assert stalled.transport.aborted
    assert not steady.transport.aborted and not idle.transport.aborted
    assert sweep.aborted == 1


def test_hardening_stalled_writes_clock_restarts_on_progress_and_growth_is_not_progress() -> None:
    h = FakeHandler(1000)
    sweep = StalledWrites(lambda: [h], write_timeout=5.0)
    sweep.sweep(0.0)
    h.transport.queued = 500  # took some
    sweep.sweep(4.0)
    h.transport.queued = 9000  # more was queued, none taken
    sweep.sweep(8.0)
    assert not h.transport.aborted
    sweep.sweep(9.5)
    assert h.transport.aborted


def test_hardening_slots_bound_concurrent_work_and_refuse_after_the_wait() -> None:
    import asyncio

    import pytest

    from sluice.hub.limits import Slots
    from sluice.wire import errors as E

    async def main() -> None:
        slots = Slots(2, wait=0.05)
        running = 0
        peak = 0

        async def work() -> None:
            nonlocal running, peak
            async with slots.hold("test"):
                running += 1
                peak = max(peak, running)
                await asyncio.sleep(0.2)
                running -= 1

        results = await asyncio.gather(*(work() for _ in range(4)), return_exceptions=True)
        assert peak == 2
        busy = [r for r in results if isinstance(r, E.ServerBusy)]
        assert len(busy) == 2 and "2 test requests are running" in str(busy[0])
        async with slots.hold("test"):  # free again
            pass
        with pytest.raises(E.ServerBusy):
            async with slots.hold("test"), slots.hold("test"), slots.hold("test"):
                pass

    asyncio.run(main())
