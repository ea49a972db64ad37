"""The demo behind ``actorflow demo``: a supervision tree absorbing crashes."""

from __future__ import annotations

from typing import Any, TextIO

from tenacity import wait_none

from supervisors import (
    ChildSpec,
    EventKind,
    Kill,
    RestartPolicy,
    Strategy,
    SupervisedActor,
    Supervisor,
    SupervisorEvent,
)


class Counter(SupervisedActor):
    """Counts what it is told; the count lives in its child state and survives crashes."""

    def __init__(self, state: dict[str, int]) -> None:
        super().__init__()
        self.state = state

    def on_receive(self, message: Any) -> Any:
        if message == "count":
            return self.state["n"]
        self.state["n"] += 1
        return None


def demo(out: TextIO) -> int:
    events: list[SupervisorEvent] = []
    ref = Supervisor.start(
        [
            ChildSpec(id=f"counter-{i}", factory=Counter, state_factory=lambda: {"n": 0})
            for i in range(3)
        ],
        strategy=Strategy.ONE_FOR_ONE,
        policy=RestartPolicy(wait=wait_none(), max_restarts=100, within_seconds=1.0),
        name="demo",
        listener=events.append,
    )
    try:
        sup = ref.proxy()
        handles = [sup.child(f"counter-{i}").get(timeout=5) for i in range(3)]
        for round_ in range(10):
            for h in handles:
                h.tell("tick")
            handles[round_ % 3].tell(Kill())
        counts = [h.ask("count", timeout=5) for h in handles]
        rows = sup.which_children().get(timeout=5)
    finally:
        ref.stop(timeout=10)
    restarts = sum(1 for e in events if e.kind is EventKind.RESTARTED)
    print("actorflow demo: a supervision tree absorbing crashes", file=out)
    for row in rows:
        print(f"  {row.id:<10} {row.status:<10} restarts={row.restarts}", file=out)
    print(f"  ticks counted per child: {counts} (10 sent to each)", file=out)
    print(
        f"  {restarts} restarts, 0 ticks lost" if counts == [10, 10, 10] else "  LOST TICKS",
        file=out,
    )
    return 0 if counts == [10, 10, 10] and restarts == 10 else 1
