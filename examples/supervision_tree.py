"""`supervisors` on its own: a small tree for an application's own pykka actors.

A cache and a writer sit under a supervisor (rest_for_one: when the cache crashes, the
writer that depends on it restarts too); the writer's pending writes survive its crashes
because they live in its child state. Run it: ``python examples/supervision_tree.py``.
"""

from __future__ import annotations

from typing import Any

from tenacity import wait_exponential

from supervisors import (
    ChildSpec,
    Kill,
    RestartPolicy,
    Strategy,
    SupervisedActor,
    Supervisor,
    SupervisorEvent,
)


class Cache(SupervisedActor):
    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, Any] = {}  # per incarnation: lost on a crash, by design

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value

    def get(self, key: str) -> Any:
        return self.data.get(key)


class Writer(SupervisedActor):
    def __init__(self, state: list[str]) -> None:
        super().__init__()
        self.journal = state  # the child state: outlives every incarnation

    def on_receive(self, message: Any) -> Any:
        if message == "count":
            return len(self.journal)
        self.journal.append(message)
        return None


def main() -> int:
    events: list[SupervisorEvent] = []
    root = Supervisor.start(
        [
            ChildSpec(id="cache", factory=Cache),
            ChildSpec(id="writer", factory=Writer, state_factory=list),
        ],
        strategy=Strategy.REST_FOR_ONE,
        policy=RestartPolicy(wait=wait_exponential(multiplier=0.001, max=0.01), max_restarts=5),
        name="app",
        listener=events.append,
    )
    try:
        sup = root.proxy()
        cache = sup.child("cache").get(timeout=5)
        writer = sup.child("writer").get(timeout=5)
        cache.proxy().put("greeting", "hello").get(timeout=5)
        for i in range(5):
            writer.tell(f"line {i}")
        cache.tell(Kill())  # rest_for_one: the writer restarts after the cache
        for i in range(5, 10):
            writer.tell(f"line {i}")  # buffered while they restart, then delivered in order
        lines = writer.ask("count", timeout=5)
        greeting = cache.proxy().get("greeting").get(timeout=5)
        children = sup.which_children().get(timeout=5)
    finally:
        root.stop(timeout=10)
    for child in children:
        print(f"{child.id}: {child.status}, restarted {child.restarts}x")
    print(f"journal lines kept across restarts: {lines}")
    print(f"cache after its crash: {greeting!r} (per-incarnation data is gone)")
    print("events:", ", ".join(f"{e.kind.value}:{e.child_id}" for e in events))
    return 0 if lines == 10 and greeting is None else 1


if __name__ == "__main__":
    raise SystemExit(main())
