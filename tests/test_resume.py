"""The replay/live seam as data: `Resume.finish` sends a resuming client each event once."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from ssehub import GAP_EVENT, EventParser, Replay
from ssehub.resume import Resume, gap_notice


def event(i: int) -> tuple[str, bytes]:
    return f"e{i}", f"id: e{i}\ndata: {i}\n\n".encode()


EVENTS = [event(i) for i in range(10)]


def test_found_replay_and_nothing_held_sends_the_replay_only() -> None:
    seam = Resume("e2").finish(Replay(EVENTS[3:6], found=True))
    assert seam.gap is None
    assert seam.replayed == tuple(data for _, data in EVENTS[3:6])
    assert seam.live == ()


def test_live_events_already_in_the_replay_are_not_sent_twice() -> None:
    resume = Resume("e2")
    for event_id, data in EVENTS[4:8]:  # arrived live while e3..e5 were read from history
        resume.hold(event_id, data)
    seam = resume.finish(Replay(EVENTS[3:6], found=True))
    assert seam.replayed + seam.live == tuple(data for _, data in EVENTS[3:8])


def test_live_events_up_to_the_resume_id_are_dropped() -> None:
    # A feed behind its history still delivers events the client had before it left.
    resume = Resume("e4")
    for event_id, data in EVENTS[2:7]:
        resume.hold(event_id, data)
    seam = resume.finish(Replay(EVENTS[5:6], found=True))
    assert seam.replayed + seam.live == (EVENTS[5][1], EVENTS[6][1])


def test_an_id_history_does_not_hold_gets_the_gap_notice_first() -> None:
    seam = Resume("gone-1").finish(Replay(EVENTS[7:10], found=False))
    assert seam.gap is not None
    (notice,) = EventParser().feed(seam.gap)
    assert notice.event == GAP_EVENT
    assert notice.id is None  # the notice must not move the client's Last-Event-ID
    assert json.loads(notice.data) == {"last_event_id": "gone-1", "replayed": 3}
    assert seam.replayed == tuple(data for _, data in EVENTS[7:10])


def test_gap_notice_is_one_event_with_json_data() -> None:
    assert gap_notice("x", 0).encode() == (
        b'event: ssehub.gap\ndata: {"last_event_id": "x", "replayed": 0}\n\n'
    )


@st.composite
def resumes(draw: st.DrawFn) -> tuple[int, int, int, int, int]:
    """(total events, resume index, first retained, newest replayed, first held), consistent
    with how a backend and its feed can interleave."""
    total = draw(st.integers(1, 30))
    newest = draw(st.integers(-1, total - 1))  # the last event published when history was read
    first_kept = draw(st.integers(0, newest + 1))  # history holds first_kept..newest
    resume = draw(st.integers(-1, total - 1).filter(lambda k: k <= newest))
    found = resume >= first_kept - 1
    # The feed delivers every event published after the hold began, in order; the hold began
    # before history was read, so it covers newest + 1 onwards, and maybe more (the feed can lag
    # behind history, but not behind what history already trimmed when the id was not found).
    low = 0 if found else first_kept
    first_held = draw(st.integers(min(low, newest + 1), newest + 1))
    return total, resume, first_kept, newest, first_held


@given(resumes())
def test_every_event_after_the_resume_id_arrives_once_in_order(
    case: tuple[int, int, int, int, int],
) -> None:
    total, resume_at, first_kept, newest, first_held = case
    events = [event(i) for i in range(total)]
    found = resume_at >= first_kept - 1
    replayed = (
        events[max(resume_at + 1, first_kept) : newest + 1]
        if found
        else (events[first_kept : newest + 1])
    )
    resume = Resume(f"e{resume_at}" if resume_at >= 0 else "never-seen")
    for event_id, data in events[first_held:]:
        resume.hold(event_id, data)
    seam = resume.finish(Replay(replayed, found=found))

    sent = [*seam.replayed, *seam.live]
    start = resume_at + 1 if found else first_kept
    assert sent == [data for _, data in events[start:]]
    assert (seam.gap is None) == found


# -- with positions: what the replay covers is decided by stream position, not by id ----------


def positioned(i: int, event_id: str) -> tuple[str, bytes, tuple[int]]:
    return event_id, f"id: {event_id}\ndata: {i}\n\n".encode(), (i,)


def test_live_events_at_or_below_the_replay_head_are_dropped_whatever_their_ids() -> None:
    # Ids that repeat and go backwards: only positions say what the replay covered.
    events = [positioned(i, event_id) for i, event_id in enumerate("zyxzyx")]
    resume = Resume("y")
    for event_id, data, position in events[2:]:  # the feed was behind history
        resume.hold(event_id, data, position)
    seam = resume.finish(Replay([(e[0], e[1]) for e in events[2:4]], found=True, head=(3,)))
    assert seam.replayed + seam.live == tuple(e[1] for e in events[2:])
    assert seam.after == (3,)  # later live events at or below (3,) must be dropped too


def test_without_a_head_the_seam_says_nothing_about_later_events() -> None:
    assert Resume("e1").finish(Replay(EVENTS[2:4], found=True)).after is None


@given(
    st.integers(1, 30)
    .flatmap(
        lambda total: st.tuples(
            st.just(total),
            st.integers(0, total - 1),  # the newest event in history when it was read
            st.integers(0, total),  # the first event the feed still had to deliver
            st.lists(st.sampled_from("abc"), min_size=total, max_size=total),  # ids
        )
    )
    .filter(lambda case: case[2] <= case[1] + 1)
)
def test_with_positions_each_event_after_the_replay_is_sent_once(
    case: tuple[int, int, int, list[str]],
) -> None:
    total, newest, first_live, ids = case
    events = [positioned(i, ids[i]) for i in range(total)]
    resume = Resume(ids[0])
    for event_id, data, position in events[first_live:]:
        resume.hold(event_id, data, position)
    replay = Replay([(e[0], e[1]) for e in events[1 : newest + 1]], found=True, head=(newest,))
    seam = resume.finish(replay)
    assert seam.replayed + seam.live == tuple(e[1] for e in events[1:])
