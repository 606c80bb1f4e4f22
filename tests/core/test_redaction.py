"""No secret reaches a log record: token headers, signatures, tokens, registered secrets (redaction.py).

The last test goes through the product's own path (settings -> `connect` -> a token-auth call to the
emulator over HTTP) with httpx and httpcore at DEBUG, and never installs the redaction itself: it must
already be in place because the client was used.
"""

from __future__ import annotations

import io
import logging
import sys

import pytest

from vbs_backup.redaction import RedactingFilter, redact, redact_record, register_secret

TOKEN = "MII" + "Xy7-_" * 30


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        # httpcore at DEBUG: receive_response_headers.complete return_value=(..., [(b'name', b'value')])
        (f"return_value=(b'HTTP/1.1', 201, b'Created', [(b'X-Subject-Token', b'{TOKEN}')])", TOKEN),
        ("headers {'x-auth-token': 'tok-3f2a9b', 'host': 'h'}", "tok-3f2a9b"),
        ('{"X-Security-Token": "sec-7c1d", "a": 1}', "sec-7c1d"),
        ("Authorization: SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host, Signature=0a1b2c3d4e5f6071", "AK1"),
        ("signed: SDK-HMAC-SHA256 Access=AK1, SignedHeaders=host;x-sdk-date, Signature=ab12", "ab12"),
        ("Signature=0a1b2c3d4e5f607182930a1b2c3d4e5f", "0a1b2c3d4e5f607182930a1b2c3d4e5f"),
        ("X-Auth-Token=tok-9e8d&x=1", "tok-9e8d"),
        ("authorization: Bearer abcdefgh12345678", "abcdefgh12345678"),
        ('body {"auth": {"password": "pa\\"ss-word", "name": "ops"}}', 'pa\\"ss-word'),
        (f"a token {TOKEN} in prose", TOKEN),
        ("ledger postgresql://vbs:db-pass-1@db:5432/ledger", "db-pass-1"),
    ],
)
def test_each_way_a_secret_shows_up_in_a_log_line_is_masked(text, secret):
    cleaned = redact(text)
    assert secret not in cleaned and "***" in cleaned


def test_what_is_not_secret_is_left_alone():
    lines = [
        "send_request_headers.started request=<Request [b'GET']>",
        'HTTP Request: GET http://127.0.0.1:8/v1/p/cloudservers/detail "HTTP/1.1 200 OK"',
        "ECS list_servers failed: 401 APIGW.0301 verify aksk signature fail (request 5f3e)",
        "token auth needs domain",
    ]
    assert [redact(line) for line in lines] == lines


def test_a_registered_secret_is_masked_wherever_it_appears_and_short_values_are_not_registered():
    register_secret("s3cr3t-value-for-test")
    register_secret("abc")  # too short to mask everywhere
    assert redact("sk=s3cr3t-value-for-test;") == "sk=***;"
    assert redact("abc") == "abc"


def test_a_record_is_cleaned_in_message_arguments_and_exception_text():
    try:
        raise RuntimeError(f"boom with X-Auth-Token: {TOKEN}")
    except RuntimeError:
        record = logging.getLogger("httpcore.http11").makeRecord(
            "httpcore.http11",
            logging.DEBUG,
            __file__,
            1,
            "headers %s",
            ([(b"X-Subject-Token", TOKEN.encode())],),
            exc_info=sys.exc_info(),
        )
    redact_record(record)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.handle(record)
    assert TOKEN not in out.getvalue()
    assert "X-Subject-Token" in out.getvalue() and "boom with X-Auth-Token: ***" in out.getvalue()


def test_the_filter_cleans_what_passes_a_handler():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.redaction.filter")
    logger.addHandler(handler)
    try:
        logger.warning("sent %s", {"X-Auth-Token": TOKEN})
    finally:
        logger.removeHandler(handler)
    assert TOKEN not in out.getvalue() and "'X-Auth-Token': '***'" in out.getvalue()


async def test_the_client_installs_redaction_for_httpx_and_httpcore_at_debug(emulator, monkeypatch):
    from vbs_backup.connection import connect
    from vbs_backup.settings import Settings

    for key in ("VBS_BACKUP_AK", "VBS_BACKUP_SK"):
        monkeypatch.delenv(key, raising=False)
    settings = Settings(
        _env_file=None,
        endpoint=emulator.url,
        project_id=emulator.project_id,
        username=emulator.username,
        password=emulator.password,
        domain=emulator.domain,
    )
    # A handler added after the client was set up, on the root, as Prefect configures its own: it sees
    # httpcore's children (httpcore.http11, httpcore.connection) by propagation.
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    levels = {name: logging.getLogger(name).level for name in ("", "httpx", "httpcore", "vbs_backup")}
    root.addHandler(handler)
    for name in levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        client = connect(settings)
        try:
            servers = await client.ecs.list_servers()
        finally:
            await client.close()
    finally:
        root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    assert servers  # the call went through, with a token
    logged = out.getvalue()
    tokens = list(emulator.state.tokens)
    assert tokens and "receive_response_headers" in logged  # httpcore did log the response headers
    assert "(b'x-subject-token', b'***')" in logged.lower()
    assert not [t for t in tokens if t in logged]
    assert emulator.password not in logged
