"""The pykka internals `supervisors._actor` relies on, checked by name and signature.

`supervisors/_actor.py` is the one module that touches pykka's private API (see its
docstring). A pykka release that renames or reshapes any of it fails here, by name,
instead of deep inside a supervision test.
"""

from __future__ import annotations

import inspect
import threading

import pykka
import pykka._actor
import pykka._envelope
import pykka.messages
import pytest
from pykka import ActorRegistry

from supervisors import SupervisedActor, ask_into
from supervisors._actor import ActorStop, Envelope

HOOKS = {
    "_create_actor_inbox": [],
    "_start_actor_loop": ["self"],
    "_actor_loop": ["self"],
    "_actor_loop_setup": ["self"],
    "_actor_loop_running": ["self"],
    "_actor_loop_teardown": ["self"],
    "_handle_receive": ["self", "message"],
}


@pytest.mark.parametrize("hook", sorted(HOOKS))
def test_every_overridden_loop_hook_exists_with_its_signature(hook: str) -> None:
    pykka_hook = inspect.getattr_static(pykka.Actor, hook, None)
    assert pykka_hook is not None, f"pykka.Actor.{hook} is gone"
    params = list(inspect.signature(getattr(pykka.Actor, hook)).parameters)
    if isinstance(pykka_hook, staticmethod):
        params = ["self", *params]
        assert HOOKS[hook] == [], f"pykka.Actor.{hook} became a staticmethod"
    expected = HOOKS[hook] or ["self"]
    assert params == expected, f"pykka.Actor.{hook}{params} changed"


def test_the_loop_runs_setup_then_running_then_teardown() -> None:
    source = inspect.getsource(pykka.Actor._actor_loop)
    calls = [
        source.index(f"self.{step}()")
        for step in ("_actor_loop_setup", "_actor_loop_running", "_actor_loop_teardown")
    ]
    assert calls == sorted(calls)


def test_envelope_carries_a_message_and_an_optional_reply_future() -> None:
    assert Envelope is pykka._envelope.Envelope
    assert list(inspect.signature(Envelope).parameters) == ["message", "reply_to"]
    envelope = Envelope("hello")
    assert (envelope.message, envelope.reply_to) == ("hello", None)


def test_the_registry_has_the_list_and_lock_a_forked_child_renews() -> None:
    assert type(ActorRegistry._actor_refs) is list
    assert type(ActorRegistry._actor_refs_lock) is type(threading.RLock())


def test_the_stop_message_and_the_inbox_protocol_exist() -> None:
    assert ActorStop is pykka.messages._ActorStop
    assert ActorStop() == ()
    assert hasattr(pykka._actor, "ActorInbox")
    assert pykka.messages.ProxyCall._fields == ("attr_path", "args", "kwargs")


class _Echo(SupervisedActor):
    def on_receive(self, message: object) -> object:
        return ("echo", message)


def test_ask_into_sets_the_reply_on_the_callers_future() -> None:
    ref = _Echo.start()
    try:
        future: pykka.ThreadingFuture[object] = pykka.ThreadingFuture()
        ask_into(ref, "ping", future)
        assert future.get(timeout=5) == ("echo", "ping")
    finally:
        ref.stop()
