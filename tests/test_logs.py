import logging

from slack_sdk.web.async_client import AsyncWebClient

from bot.logs import LEVEL_TESTED, RedactingFormatter, configure_logging, redact


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


def test_libraries_that_check_their_own_level_skip_debug_lines_below_it() -> None:
    """slack_sdk's web client (and Bolt) build a debug line for each request and response
    unless their logger's own level is above DEBUG; the bot sets it to the configured one."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {n: logging.getLogger(n).level for n in LEVEL_TESTED}
    try:
        configure_logging("INFO", [])
        web = AsyncWebClient(token="xoxb-test")._logger
        assert web.name in LEVEL_TESTED and web.level == logging.INFO
        assert logging.getLogger("bot.adapters.slack.bolt").level == logging.INFO
        configure_logging("DEBUG", [])  # asked for: the debug lines are wanted
        assert web.level == logging.DEBUG
    finally:
        root.handlers[:], level, levels = saved
        root.setLevel(level)
        for name, old in levels.items():
            logging.getLogger(name).setLevel(old)
