"""What a celebration may say: names that could write email headers are not used, and no name
reaches an email's Subject."""

from __future__ import annotations

import pytest

from services.notify import celebrate, pacing


@pytest.mark.parametrize(
    "name",
    [
        "=?utf-8?q?=0D=0AReply-To:_x?=",  # an encoded word: decodes to a line break in a header
        "Sam =?utf-8?b?DQo=?=",
        "Sam\r\nBcc: x",
        "Sam\x00",
        "Sam\x1b[2J",
        "Sam\tx",
        "Sam\u200b",
        "Sam\u202e",
        "Sam\u2028x",  # control, format, line breaks
        "",
        "   ",
        None,
        42,
        "S" * 81,
    ],
)
def test_a_display_name_that_could_be_read_as_anything_but_a_name_is_not_used(name):
    assert celebrate.display_name(name) is None


@pytest.mark.parametrize(
    "name, shown", [("Sam", "Sam"), ("  Zoë ", "Zoë"), ("Ana-María O'Neil", "Ana-María O'Neil")]
)
def test_an_ordinary_display_name_is_kept(name, shown):
    assert celebrate.display_name(name) == shown


def test_no_name_reaches_an_email_subject():
    shared = celebrate.title_for({"partner_id": "sam"}, "ana", "Sam")
    assert shared == "Sam shared a milestone with you"  # the inbox names the partner
    assert celebrate.subject_for(shared) == "Your partner shared a milestone with you"
    assert celebrate.subject_for("12 Sam things to celebrate") == celebrate.SHARED_SUBJECT
    for own in (celebrate.OWN_TITLE, celebrate.COUPLE_TITLE, pacing.FOLDED_TITLE.format(count=3)):
        assert celebrate.subject_for(own) == own
