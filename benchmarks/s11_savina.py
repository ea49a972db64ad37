"""S11 Savina: four actor benchmarks from the literature, supervised against bare pykka.

The workloads come from the Savina actor benchmark suite (S. M. Imam and V. Sarkar,
"Savina - An Actor Benchmark Suite", AGERE! 2014; the reference implementation is
https://github.com/shamsimam/savina, whose ``*Config.java`` files give the defaults
quoted below). Each is written once, as a `pykka.ThreadingActor`, and run three ways
on the same messages:

- ``bare``: the plain `pykka.ThreadingActor` subclasses, started with ``start()``,
  peers addressed by `pykka.ActorRef` (the baseline);
- ``handle``: the same logic as `supervisors.SupervisedActor` children of one
  `supervisors.Supervisor`, peers (and the driver) addressed through each child's
  `supervisors.ChildHandle`, as users of the supervision layer call them;
- ``ref``: the same supervised children, addressed by the raw `pykka.ActorRef` of the
  current incarnation (``handle.actor_ref``), which isolates the handle's own cost.

The four workloads (Savina's names and default sizes; ours are smaller, Python being
what it is):

- ping-pong (``pingpong``, N=40,000 pings): two actors send one message back and forth;
  one message in flight, so every message is a thread hand-off.
- counting actor (``count``, N=1,000,000): a producer actor sends N increments to a
  counter, then asks for the total; a one-way stream into one mailbox.
- fork-join throughput (``fjthrput``, A=60 actors, N=10,000 messages each): the driver
  sends N messages to each of A actors, round robin; each message does a small
  computation (``sin(θ)²``); done when every actor has handled its N.
- thread ring (``threadring``, N=100 actors, R=100,000 hops): a token passed round a
  ring of actors, each forwarding it with its count decremented until it reaches 0.

The clock runs from the first message the driver sends to the moment the last actor
signals completion (a `threading.Event`); starting and stopping the actors (and the
supervisor) is outside it. Figures are µs per message handled. Goal: the supervised
side through its handles at most 1.1x the bare one.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pykka

from supervisors import ChildSpec, SupervisedActor, Supervisor

from ._core import BenchmarkError, Figure, Goal, Result, Settings, alternate, column

NAME = "s11_savina"
TITLE = "Savina ping-pong, counting, fork-join, thread ring: supervised vs bare pykka"
Kind = Literal["handle", "ref", "bare"]
KINDS: tuple[Kind, ...] = ("handle", "ref", "bare")
WORKLOADS = 4
DONE_TIMEOUT = 120.0
"""Seconds a workload may take before the measurement is called failed."""
UNIT = "µs/msg"


def steps(settings: Settings) -> int:
    return settings.repeats * len(KINDS) * WORKLOADS


# -- messages and completion ------------------------------------------------------------

PING = "ping"
PONG = "pong"
INCREMENT = "increment"
RETRIEVE = "retrieve"
WORK = "work"
THETA = 37.2  # Savina's fork-join computation argument


@dataclass(frozen=True, slots=True)
class Connect:
    """Wiring, sent before the clock starts: whom to talk to, whom to tell when done."""

    peers: tuple[Any, ...]
    done: Latch


@dataclass(frozen=True, slots=True)
class Start:
    count: int


@dataclass(frozen=True, slots=True)
class Total:
    count: int


class Latch:
    """Counts down ``parties`` arrivals, then sets its event; keeps the last value."""

    def __init__(self, parties: int) -> None:
        self._left = parties
        self._lock = threading.Lock()
        self.event = threading.Event()
        self.value: Any = None

    def arrive(self, value: Any = None) -> None:
        with self._lock:
            self._left -= 1
            self.value = value
            if self._left == 0:
                self.event.set()

    def wait(self, where: str) -> Any:
        if not self.event.wait(DONE_TIMEOUT):
            raise BenchmarkError(f"{where} did not finish within {DONE_TIMEOUT}s")
        return self.value


# -- the workloads' actors: bare pykka, and the same logic supervised -------------------


class _Wired(pykka.ThreadingActor):
    peers: tuple[Any, ...] = ()
    done: Latch

    def connect(self, message: Connect) -> None:
        self.peers = message.peers
        self.done = message.done


class Pinger(_Wired):
    """Ping-pong: sends a ping, counts the pong, sends the next until N are done."""

    left = 0

    def on_receive(self, message: Any) -> Any:
        if message is PONG:
            self.left -= 1
            if self.left:
                self.peers[0].tell(PING)
            else:
                self.done.arrive()
        elif type(message) is Start:
            self.left = message.count
            self.peers[0].tell(PING)
        elif type(message) is Connect:
            self.connect(message)


class Ponger(_Wired):
    def on_receive(self, message: Any) -> Any:
        if message is PING:
            self.peers[0].tell(PONG)
        elif type(message) is Connect:
            self.connect(message)


class Producer(_Wired):
    """Counting actor: sends N increments to the counter, then asks for the total."""

    expected = 0

    def on_receive(self, message: Any) -> Any:
        if type(message) is Start:
            self.expected = message.count
            counter = self.peers[0]
            for _ in range(message.count):
                counter.tell(INCREMENT)
            counter.tell(RETRIEVE)
        elif type(message) is Total:
            self.done.arrive(message.count)
        elif type(message) is Connect:
            self.connect(message)


class Counter(_Wired):
    count = 0

    def on_receive(self, message: Any) -> Any:
        if message is INCREMENT:
            self.count += 1
        elif message is RETRIEVE:
            self.peers[0].tell(Total(self.count))
        elif type(message) is Connect:
            self.connect(message)


class Throughput(_Wired):
    """Fork-join throughput: does Savina's small computation per message, N of them."""

    handled = 0
    expected = 0

    def on_receive(self, message: Any) -> Any:
        if message is WORK:
            if math.sin(THETA) ** 2 <= 0:
                raise BenchmarkError("fork-join computation gave an impossible value")
            self.handled += 1
            if self.handled == self.expected:
                self.done.arrive(self.handled)
        elif type(message) is Start:
            self.expected = message.count
        elif type(message) is Connect:
            self.connect(message)


class RingNode(_Wired):
    """Thread ring: forwards the token (hops left) to the next node; 0 ends the run."""

    def on_receive(self, message: Any) -> Any:
        if type(message) is int:
            if message:
                self.peers[0].tell(message - 1)
            else:
                self.done.arrive()
        elif type(message) is Connect:
            self.connect(message)


# SupervisedActor first: its inbox, loop and crash handling; the workload's on_receive.
class SupervisedPinger(SupervisedActor, Pinger):
    pass


class SupervisedPonger(SupervisedActor, Ponger):
    pass


class SupervisedProducer(SupervisedActor, Producer):
    pass


class SupervisedCounter(SupervisedActor, Counter):
    pass


class SupervisedThroughput(SupervisedActor, Throughput):
    pass


class SupervisedRingNode(SupervisedActor, RingNode):
    pass


SUPERVISED: dict[type[pykka.ThreadingActor], type[SupervisedActor]] = {
    Pinger: SupervisedPinger,
    Ponger: SupervisedPonger,
    Producer: SupervisedProducer,
    Counter: SupervisedCounter,
    Throughput: SupervisedThroughput,
    RingNode: SupervisedRingNode,
}


# -- running one workload one way --------------------------------------------------------


class Cast:
    """A set of started actors, addressed one way; stops them all on exit."""

    def __init__(self, kind: Kind, classes: Sequence[type[pykka.ThreadingActor]]) -> None:
        self.kind = kind
        self._supervisor: pykka.ActorRef[Any] | None = None
        self._refs: list[pykka.ActorRef[Any]] = []
        self.addresses: list[Any] = []
        if kind == "bare":
            for cls in classes:
                self._refs.append(cls.start())
            self.addresses = list(self._refs)
            return
        specs = [ChildSpec(f"a{i}", SUPERVISED[cls]) for i, cls in enumerate(classes)]
        self._supervisor = Supervisor.start(specs, name="savina")
        proxy = self._supervisor.proxy()
        handles = [proxy.child(spec.id).get(timeout=DONE_TIMEOUT) for spec in specs]
        self.addresses = handles if kind == "handle" else [h.actor_ref for h in handles]

    def __enter__(self) -> Cast:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._supervisor is not None:
            self._supervisor.stop(timeout=DONE_TIMEOUT)
        for ref in self._refs:
            ref.stop(timeout=DONE_TIMEOUT)


def _timed(send: Callable[[], None], done: Latch, where: str) -> tuple[float, Any]:
    started = time.perf_counter()
    send()
    value = done.wait(where)
    return time.perf_counter() - started, value


def ping_pong(kind: Kind, n: int) -> float:
    with Cast(kind, (Pinger, Ponger)) as cast:
        ping, pong = cast.addresses
        done = Latch(1)
        ping.tell(Connect((pong,), done))
        pong.tell(Connect((ping,), done))
        elapsed, _ = _timed(lambda: ping.tell(Start(n)), done, "ping-pong")
    return elapsed / (2 * n) * 1e6


def counting(kind: Kind, n: int) -> float:
    with Cast(kind, (Producer, Counter)) as cast:
        producer, counter = cast.addresses
        done = Latch(1)
        producer.tell(Connect((counter,), done))
        counter.tell(Connect((producer,), done))
        elapsed, total = _timed(lambda: producer.tell(Start(n)), done, "counting")
    if total != n:
        raise BenchmarkError(f"counting actor counted {total}, expected {n}")
    return elapsed / (n + 2) * 1e6


def fork_join(kind: Kind, actors: int, n: int) -> float:
    with Cast(kind, (Throughput,) * actors) as cast:
        workers = cast.addresses
        done = Latch(actors)
        for worker in workers:
            worker.tell(Connect((), done))
            worker.tell(Start(n))

        def send() -> None:
            for _ in range(n):
                for worker in workers:
                    worker.tell(WORK)

        elapsed, last = _timed(send, done, "fork-join")
    if last != n:
        raise BenchmarkError(f"fork-join: an actor handled {last} messages, expected {n}")
    return elapsed / (actors * n) * 1e6


def thread_ring(kind: Kind, actors: int, hops: int) -> float:
    with Cast(kind, (RingNode,) * actors) as cast:
        nodes = cast.addresses
        done = Latch(1)
        for i, node in enumerate(nodes):
            node.tell(Connect((nodes[(i + 1) % actors],), done))
        elapsed, _ = _timed(lambda: nodes[0].tell(hops), done, "thread ring")
    return elapsed / (hops + 1) * 1e6


# -- the scenario ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workload:
    label: str
    measure: Callable[[Kind], float]


def workloads(settings: Settings) -> list[Workload]:
    pings = settings.size(20_000, 2_000)
    increments = settings.size(200_000, 20_000)
    fj_actors, fj_messages = settings.size(60, 20), settings.size(1_000, 250)
    ring, hops = settings.size(100, 20), settings.size(20_000, 5_000)
    return [
        Workload(f"ping-pong, {pings:,} round trips", lambda k: ping_pong(k, pings)),
        Workload(f"counting actor, {increments:,} messages", lambda k: counting(k, increments)),
        Workload(
            f"fork-join throughput, {fj_actors} actors x {fj_messages:,} messages",
            lambda k: fork_join(k, fj_actors, fj_messages),
        ),
        Workload(
            f"thread ring, {ring} actors, {hops:,} hops", lambda k: thread_ring(k, ring, hops)
        ),
    ]


def _bind(workload: Workload, kind: Kind) -> Callable[[], float]:
    return lambda: workload.measure(kind)


def run(settings: Settings) -> list[Result]:
    rows: list[Result] = []
    for workload in workloads(settings):
        samples = alternate(
            settings,
            f"{NAME} {workload.label}",
            {kind: _bind(workload, kind) for kind in KINDS},
        )
        bare = Figure("bare pykka.ThreadingActor", UNIT, column(samples["bare"]))
        rows.append(
            Result(
                NAME,
                f"{workload.label}: supervised via ChildHandle vs bare",
                Figure("SupervisedActor via ChildHandle", UNIT, column(samples["handle"])),
                bare,
                Goal("≤ 1.1x bare", "ratio", 1.1),
            )
        )
        rows.append(
            Result(
                NAME,
                f"{workload.label}: supervised via raw ActorRef vs bare",
                Figure("SupervisedActor via ActorRef", UNIT, column(samples["ref"])),
                bare,
                note="no goal: isolates the handle's share",
            )
        )
    return rows
