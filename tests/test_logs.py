import logging

from bot.logs import RedactingFormatter, redact


def test_known_secrets_and_token_shapes_are_masked() -> None:
    text = (
        "key=sk-ant-api03-abcdefghijkl slack=xoxb-1111-2222-abcdef app=xapp-1-A1-2-xyz "
        "url=https://discord.com/api/v10/webhooks/123456/aW50ZXJhY3Rpb246MTIzNDU2Nzg5MA/messages "
        "custom=hunter2-long-secret"
    )
    out = redact(text, ["hunter2-long-secret"])
    for secret in ("sk-ant-api03", "xoxb-1111", "xapp-1-A1", "aW50ZXJhY3Rpb24", "hunter2"):
        assert secret not in out
    assert out.count("[redacted]") == 5


def test_formatter_masks_arguments_too() -> None:
    formatter = RedactingFormatter("%(message)s", ["my-secret-value"])
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token %s", ("my-secret-value",),
                               None)
    assert formatter.format(record) == "token [redacted]"


def test_a_socket_mode_url_loses_its_ticket() -> None:
    url = "wss://wss-primary.slack.com/link/?ticket=7a1b-c2d3%3D&app_id=A0123"
    assert redact(f"Connecting to {url}") == (
        "Connecting to wss://wss-primary.slack.com/link/?[redacted]&app_id=A0123")
