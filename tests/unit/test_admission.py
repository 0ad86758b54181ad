"""OCR admission (issue 21): a token bucket in DynamoDB shared by every OCR invocation, AIMD on a throttle."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from docpipe.adapters.tokens import TokenStore
from docpipe.admission import Admission
from docpipe.config import Settings
from docpipe.errors import OcrBusy
from ocr.engines import TextractEngine

pytestmark = pytest.mark.usefixtures("aws")


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def store() -> TokenStore:
    return TokenStore(Settings.from_env().usage_table or "")


def test_twenty_racing_workers_take_the_one_token_of_a_window(store) -> None:
    clock = Clock()
    admission = Admission(store, tps=5, clock=clock, wait_seconds=0)

    with ThreadPoolExecutor(8) as pool:
        taken = list(pool.map(lambda _: admission.take(), range(20)))

    assert taken.count(True) == 1


def test_a_worker_paces_its_calls_over_the_second(store) -> None:
    clock = Clock(1_000.0)
    admission = Admission(store, tps=5, clock=clock, sleep=clock.sleep, wait_seconds=2.0, jitter=lambda: 0.0)

    times = []
    for _ in range(6):
        assert admission.acquire()
        times.append(round(clock() - 1_000.0, 3))

    assert times == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


def test_a_worker_without_a_token_in_time_gives_up(store) -> None:
    clock = Clock(1_000.5)
    admission = Admission(store, tps=1, clock=clock, sleep=clock.sleep, wait_seconds=0.4, jitter=lambda: 0.0)
    assert admission.acquire()

    assert not admission.acquire()  # the next window starts at 1001.0, past the 0.4 s wait
    assert clock() == pytest.approx(1_000.5)


def test_a_throttle_halves_the_shared_rate_and_it_grows_back(store) -> None:
    clock = Clock()
    one, other = (Admission(store, tps=8, clock=clock, increase_per_second=0.5) for _ in range(2))

    one.throttled()
    clock.now += 1.5  # past the other worker's cached read

    assert other.rate() == pytest.approx(4 + 0.75)
    clock.now += 20
    assert Admission(store, tps=8, clock=clock).rate() == 8


class ThrottlingTextract:
    """Answers DetectDocumentText, throttling every call past ``limit`` in total."""

    def __init__(self, limit: int) -> None:
        self.calls, self.limit = 0, limit
        self.lock = threading.Lock()

    def detect_document_text(self, **_: Any) -> dict[str, Any]:
        with self.lock:
            self.calls += 1
            if self.calls > self.limit:
                raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "Detect")
        return {"Blocks": [{"BlockType": "LINE", "Page": 1, "Text": "hello", "Confidence": 99.0}]}


def test_the_engine_takes_a_token_before_each_call_and_a_throttle_hands_the_message_back(store) -> None:
    from tests.fixtures.files import image_bytes

    clock = Clock()
    admission = Admission(store, tps=2, clock=clock, sleep=clock.sleep, wait_seconds=0)
    engine = TextractEngine(ThrottlingTextract(limit=2), admission=admission, sleep=clock.sleep)
    data = image_bytes("PNG", (40, 30))

    assert engine.image(data).text == "hello"
    with pytest.raises(OcrBusy):  # this half-second's token is spent: not called
        engine.image(data)
    clock.now += 0.5
    assert engine.image(data).text == "hello"
    clock.now += 0.5
    with pytest.raises(OcrBusy):  # called and throttled: the shared rate is cut, no retries
        engine.image(data)

    assert engine.client.calls == 3
    assert admission.rate() == 1
