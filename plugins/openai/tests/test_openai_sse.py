"""SSE reading: the WHATWG rules (httpx-sse), the same events however the bytes are split,
and the size caps that keep a hostile or broken server from filling memory."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threadline.errors import StreamError
from threadline_openai.sse import EventStream


@attrs.frozen
class SSEEvent:
    """What a test compares of an event: its data, type and last id."""

    data: str
    event: str = "message"
    id: str = ""


async def _body(chunks: tuple[bytes, ...], sent: list[bytes] | None = None) -> AsyncIterator[bytes]:
    for chunk in chunks:
        if sent is not None:
            sent.append(chunk)
        yield chunk


async def _aparse(chunks: tuple[bytes, ...], max_event_size: int | None) -> list[SSEEvent]:
    kw = {} if max_event_size is None else {"max_event_size": max_event_size}
    stream = EventStream(_body(chunks), **kw)
    return [SSEEvent(e.data, e.event, e.id) async for e in stream.events()]


def parse(*chunks: bytes, max_event_size: int | None = None) -> list[SSEEvent]:
    return asyncio.run(_aparse(chunks, max_event_size))


def parse_bytewise(data: bytes) -> list[SSEEvent]:
    return parse(*(data[i : i + 1] for i in range(len(data))))


def test_one_event_per_blank_line() -> None:
    events = parse(b'data: {"a": 1}\n\ndata: two\n\n')
    assert events == [SSEEvent(data='{"a": 1}'), SSEEvent(data="two")]


def test_multi_line_data_is_joined_with_newlines() -> None:
    assert parse(b"data: one\ndata: two\ndata:\ndata: four\n\n") == [
        SSEEvent(data="one\ntwo\n\nfour")
    ]


def test_comments_are_ignored_and_dispatch_nothing() -> None:
    data = b": keep-alive\n\n:\n\ndata: x\n: in the middle\ndata: y\n\n"
    assert parse(data) == [SSEEvent(data="x\ny")]


def test_event_and_id_fields() -> None:
    events = parse(b"event: error\nid: 7\nretry: 1500\ndata: boom\n\ndata: next\n\n")
    assert events == [
        SSEEvent(data="boom", event="error", id="7"),
        SSEEvent(data="next", event="message", id="7"),  # id persists, type resets
    ]


def test_field_value_rules() -> None:
    # no space after the colon; only one leading space removed; an event with no data and
    # no type carries nothing and is skipped
    events = parse(b"data:x\n\ndata:  two spaces\n\ndata\n\n")
    assert events == [SSEEvent(data="x"), SSEEvent(data=" two spaces")]


def test_id_with_nul_is_ignored_and_an_id_alone_is_no_event() -> None:
    events = parse(b"id: 1\n\nid: a\x00b\nretry: soon\ndata: d\n\n\n\n")
    assert events == [SSEEvent(data="d", id="1")]


def test_an_error_event_is_given_even_without_data() -> None:
    assert parse(b"event: error\n\n") == [SSEEvent(data="", event="error")]


def test_unknown_fields_ignored() -> None:
    assert parse(b"foo: bar\ndata: d\n\n") == [SSEEvent(data="d")]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_line_ends(eol: bytes) -> None:
    data = eol.join([b"data: a", b": c", b"data: b", b"", b"data: z", b"", b""])
    assert parse(data) == [SSEEvent(data="a\nb"), SSEEvent(data="z")]


def test_cr_at_end_of_chunk_and_lf_at_start_of_next_are_one_line_end() -> None:
    # were the LF taken for a second line end, "a" would be dispatched on its own
    assert parse(b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n") == [SSEEvent(data="a\nb")]


def test_lone_cr_then_other_text_next_chunk() -> None:
    assert parse(b"data: a\r", b"data: b\r\r") == [SSEEvent(data="a\nb")]


def test_multibyte_character_split_across_chunks() -> None:
    text = "h\u00e9llo \U0001f600 \u4e16\u754c"
    raw = f"data: {text}\n\n".encode()
    for cut in range(1, len(raw)):
        assert parse(raw[:cut], raw[cut:]) == [SSEEvent(data=text)], cut
    assert parse_bytewise(raw) == [SSEEvent(data=text)]


def test_invalid_utf8_becomes_replacement_characters() -> None:
    assert parse(b"data: a\xffb\n\n") == [SSEEvent(data="a\ufffdb")]


def test_leading_byte_order_mark_is_dropped_once() -> None:
    assert parse(b"\xef\xbb", b"\xbfdata: x\n\n") == [SSEEvent(data="x")]
    assert parse(b"data: \xef\xbb\xbfx\n\n") == [SSEEvent(data="\ufeffx")]


def test_the_end_of_the_body_dispatches_a_pending_event_and_an_unterminated_line() -> None:
    assert parse(b"data: [DONE]") == [SSEEvent(data="[DONE]")]
    assert parse(b"data: a\n") == [SSEEvent(data="a")]
    assert parse(b"data: a\r") == [SSEEvent(data="a")]


async def test_each_event_comes_at_its_blank_line_and_ended_tells_the_end() -> None:
    sent: list[bytes] = []
    stream = EventStream(_body((b"data: a\n", b"\n", b"data: b\n\ndata: c"), sent))
    seen = [(e.data, len(sent), stream.ended) async for e in stream.events()]
    # "a" only once its blank line was read; "c" completed by the end of the body
    assert seen == [("a", 2, False), ("b", 3, False), ("c", 3, True)]


def test_oversized_line_or_event_is_a_stream_error() -> None:
    assert parse(*[b"x" * 10] * 10, max_event_size=100) == []  # a 100-byte line: accepted
    with pytest.raises(StreamError, match="longer than 100") as line:
        parse(*[b"x" * 10] * 10, b"x", max_event_size=100)
    assert line.value.code == "malformed_stream"
    with pytest.raises(StreamError, match="larger than 100"):
        parse(b"data: " + b"y" * 60 + b"\n", b"data: " + b"y" * 60 + b"\n", max_event_size=100)
    # the cap is per event: many events, each under it, are fine
    events = parse(*[b"data: " + b"z" * 80 + b"\n\n"] * 50, max_event_size=100)
    assert len(events) == 50


async def test_a_huge_line_is_stopped_at_the_cap_not_read_to_the_end() -> None:
    read = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal read
        yield b"data: "
        while True:
            read += 65536
            yield b"x" * 65536

    with pytest.raises(StreamError, match="longer than"):
        async for _ in EventStream(endless(), max_event_size=1 << 20).events():
            pass
    assert read <= (1 << 20) + 65536


# -- property tests: any split gives the same events --------------------------------------

_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x00"),
    max_size=12,
)
_event = st.fixed_dictionaries(
    {
        "lines": st.lists(_text, min_size=1, max_size=4),
        "event": st.one_of(st.none(), _text.filter(lambda s: s.strip() == s and s != "")),
        "id": st.one_of(st.none(), _text),
        "comment": st.booleans(),
    }
)


def _serialise(events: list[dict[str, object]], eols: list[bytes]) -> tuple[bytes, list[SSEEvent]]:
    """Wire bytes for ``events`` (line ends drawn from ``eols``) and the events expected."""
    out: list[str] = []
    expected: list[SSEEvent] = []
    last_id = ""
    for ev in events:
        lines: list[str] = []
        if ev["comment"]:
            lines.append(": ping")
        if ev["event"] is not None:
            lines.append(f"event: {ev['event']}")
        if ev["id"] is not None:
            lines.append(f"id: {ev['id']}")
            last_id = str(ev["id"])
        data_lines = list(ev["lines"])  # type: ignore[call-overload]
        lines += [f"data: {line}" for line in data_lines]
        lines.append("")
        out += lines
        event = SSEEvent(
            data="\n".join(data_lines),
            event=str(ev["event"]) if ev["event"] else "message",
            id=last_id,
        )
        if event.data or event.event != "message":  # else it carries nothing: skipped
            expected.append(event)
    raw = b""
    previous = b""
    for i, line in enumerate(out):
        eol = eols[i % len(eols)]
        if previous == b"\r" and not line and eol == b"\n":
            eol = b"\r\n"  # CR then LF would be one line end, not an empty line
        raw += line.encode() + eol
        previous = eol
    return raw, expected


def _split(raw: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(raw) + 1) for c in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(raw[start:point])
        start = point
    pieces.append(raw[start:])
    return pieces


@settings(max_examples=150, deadline=None)
@given(
    events=st.lists(_event, min_size=1, max_size=5),
    eols=st.lists(st.sampled_from([b"\n", b"\r\n", b"\r"]), min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_random_splits_give_the_same_events(
    events: list[dict[str, object]], eols: list[bytes], cuts: list[int]
) -> None:
    raw, expected = _serialise(events, eols)
    whole = parse(raw)
    assert whole == expected
    assert parse(*_split(raw, cuts)) == whole
    assert parse_bytewise(raw) == whole


def test_random_splits_of_a_realistic_stream() -> None:
    raw = (
        b": OPENROUTER PROCESSING\r\n\r\n"
        + "".join(
            f'data: {{"choices":[{{"delta":{{"content":"\u00e9\U0001f600{i}"}}}}]}}\r\n\r\n'
            for i in range(50)
        ).encode()
        + b"data: [DONE]\r\n\r\n"
    )
    whole = parse(raw)
    assert len(whole) == 51
    assert whole[-1].data == "[DONE]"
    rng = random.Random(1234)
    for _ in range(200):
        cuts = [rng.randrange(len(raw) + 1) for _ in range(rng.randrange(1, 40))]
        assert parse(*_split(raw, cuts)) == whole
