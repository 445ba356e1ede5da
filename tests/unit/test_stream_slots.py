"""The live inbox's slots (services/notify/stream.py): one partner's streams and
the process's are capped, and a stream whose client has left stops counting."""

from __future__ import annotations

import socket

import pytest

from services.notify.stream import Slots
from shared.errors import Throttled

ANA, BEN = "5d3c1f3e-8f4e-4c59-9f55-1f6a2b7c9d10", "7e1d2a4b-1c3d-4e5f-8a9b-0c1d2e3f4a5b"


@pytest.fixture
def connections():
    """Socket pairs as (the server's end, the client's end); closed after the test."""
    made = []

    def make():
        pair = socket.socketpair()
        made.append(pair)
        return pair

    yield make
    for a, b in made:
        a.close()
        b.close()


def test_a_phone_that_reconnects_is_not_refused_for_the_connection_it_just_dropped(connections):
    slots = Slots(per_process=8, per_partner=1)
    first_server, first_client = connections()
    slots.take(ANA, first_server)
    second_server, _ = connections()
    with pytest.raises(Throttled):
        slots.take(ANA, second_server)  # the first is still there
    first_client.close()  # the phone dropped it; the server's thread has not looked yet
    give_back = slots.take(ANA, second_server)
    give_back()
    give_back()  # giving back twice frees one slot, once
    slots.take(ANA, second_server)
    with pytest.raises(Throttled):
        slots.take(ANA, connections()[0])


def test_the_process_cap_counts_every_partner_and_refuses_with_a_retry_after(connections):
    slots = Slots(per_process=2, per_partner=2)
    slots.take(ANA, connections()[0])
    give_back = slots.take(BEN, connections()[0])
    with pytest.raises(Throttled) as refused:
        slots.take(BEN, connections()[0])
    assert refused.value.status == 429 and refused.value.headers["Retry-After"].isdigit()
    give_back()
    slots.take(BEN, connections()[0])
