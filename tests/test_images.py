"""An attachment is an image by its bytes: the type the model is told is the type it is."""

from __future__ import annotations

import pytest

from bot.conversation import Image, checked_image, sniffed_type


@pytest.mark.parametrize(("data", "kind"), [
    (b"\x89PNG\r\n\x1a\n....", "image/png"),
    (b"\xff\xd8\xff\xdb....", "image/jpeg"),
    (b"GIF89a....", "image/gif"),
    (b"GIF87a....", "image/gif"),
    (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
    (b"RIFF\x10\x00\x00\x00WAVEfmt ", None),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", None),
    (b"", None),
])
def test_the_bytes_name_the_type(data: bytes, kind: str | None) -> None:
    assert sniffed_type(data) == kind


def test_a_file_that_is_not_an_image_becomes_a_note() -> None:
    assert checked_image("x.png", b"hello") == \
        "x.png was attached but is not a PNG, JPEG, GIF or WebP image"
    assert checked_image("x.png", b"GIF89a1") == Image("image/gif", b"GIF89a1")
