"""Which Slack events are questions, and how they become conversation keys and text (pure)."""

from typing import Any

from bot.adapters.slack.events import (
    Identity,
    SlackFile,
    files_of,
    person_message,
    plain_text,
    question_text,
    thread_context,
)
from bot.conversation import Arrival, ConversationKey, Platform
from tests.fakes import slack_events as ev

ME = Identity(team_id="T0001", team_name="Fake", user_id="UBOT", bot_id="BBOT",
              user_name="supportbot")


def body(event: dict[str, Any]) -> dict[str, Any]:
    return ev.event_callback(event, "T0001")


def test_mention_is_answered_in_a_thread_under_it() -> None:
    event = ev.app_mention("<@UBOT> how do I rotate my key?", channel="C1", ts="100.000001")
    msg = person_message(body(event), ME)
    assert msg is not None
    assert msg.arrival is Arrival.MENTION and msg.text == "how do I rotate my key?"
    assert msg.key == ConversationKey(Platform.SLACK, "T0001", "C1", "100.000001")
    assert msg.event_id == "T0001:C1:100.000001" and not msg.joins_thread


def test_mention_and_its_message_twin_share_one_identity() -> None:
    mention = ev.app_mention("<@UBOT> help", channel="C1", thread_ts="90.000001")
    twin = ev.message(mention["text"], channel="C1", ts=mention["ts"], thread_ts="90.000001")
    a, b = person_message(body(mention), ME), person_message(body(twin), ME)
    assert a is not None and b is not None
    assert (a.event_id, a.key, a.arrival) == (b.event_id, b.key, b.arrival)
    assert a.key.thread == "90.000001" and a.joins_thread


def test_thread_reply_without_mention_is_a_follow_up_and_top_level_chatter_is_ignored() -> None:
    follow = person_message(body(ev.message("and staging?", channel="C1", thread_ts="9.1")), ME)
    assert follow is not None and follow.arrival is Arrival.FOLLOW_UP
    assert follow.key.thread == "9.1"
    assert person_message(body(ev.message("lunch?", channel="C1")), ME) is None


def test_dms_open_their_own_thread() -> None:
    top = person_message(body(ev.message("my invoice", channel="D1", ts="5.000001")), ME)
    reply = person_message(body(ev.message("more", channel="D1", thread_ts="5.000001")), ME)
    assert top is not None and reply is not None
    assert top.arrival is Arrival.DM and top.key.thread == "5.000001"
    assert reply.key == top.key


def test_bots_edits_deletes_and_other_subtypes_are_not_questions() -> None:
    ignored = [
        ev.message("hi", user="UBOT", bot_id="BBOT", channel="D1"),
        ev.message("hi", user="UBOT", channel="D1"),
        ev.message("beep", subtype="bot_message", channel="D1"),
        ev.message("from another app", user="U7", bot_id="B7", channel="D1"),
        ev.message("<@UBOT> new", subtype="message_changed", ts="1.1", channel="D1"),
        ev.message(subtype="message_deleted", ts="1.1", channel="D1"),
        ev.message("joined", subtype="channel_join", channel="C1", thread_ts="1.1"),
        {"type": "reaction_added", "user": "U1", "item": {}},
    ]
    assert [person_message(body(e), ME) for e in ignored] == [None] * len(ignored)


def test_file_shares_are_questions_with_their_files() -> None:
    file = {"name": "shot.png", "mimetype": "image/png", "size": 10,
            "url_private": "https://files.slack.com/a", "url_private_download": "https://d/b"}
    event = ev.message("see this", channel="D1", subtype="file_share", files=[file])
    msg = person_message(body(event), ME)
    assert msg is not None
    assert msg.files == (SlackFile("shot.png", "image/png", 10, "https://d/b"),)


def test_question_text_strips_the_mention_and_slack_markup() -> None:
    raw = "<@UBOT>, why does <https://x.io|our page> say &lt;error&gt; to <@U42>? cc <@UBOT>"
    assert question_text(raw, ME) == "why does our page (https://x.io) say <error> to @U42? cc " \
                                     "@supportbot"
    assert plain_text("<#C1|general> <!here> a &amp; b") == "#general @here a & b"


def test_files_without_a_private_url_are_still_listed() -> None:
    assert files_of([{"name": "x.pdf"}, "junk"]) == (
        SlackFile("x.pdf", "application/octet-stream", 0, ""),
    )
    assert files_of(None) == ()


def test_thread_context_quotes_earlier_messages_only() -> None:
    messages = [
        {"ts": "1.000001", "user": "U1", "text": "Deploys fail with E42"},
        {"ts": "1.000002", "user": "UBOT", "text": "Try again"},
        {"ts": "1.000003", "user": "U2", "text": ""},
        {"ts": "1.000004", "user": "U2", "text": "<@UBOT> any idea?"},
        {"ts": "1.000005", "user": "U3", "text": "later message"},
    ]
    text = thread_context(messages, "1.000004", ME)
    assert text.startswith("Earlier in this Slack thread")
    assert "> @U1: Deploys fail with E42\n> you (supportbot): Try again\n\n" in text
    assert "any idea" not in text and "later" not in text
    assert thread_context(messages[3:], "1.000004", ME) == ""
