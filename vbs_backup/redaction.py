"""Secrets never reach a log, at any level, through any logger: this module owns that promise.

`install()` (called when `vbs_backup.cloud` is imported and on every `vbs_backup.connection.connect`, so it
holds in flows and in plain scripts alike) hooks the process's `logging` record factory: every `LogRecord`
created from then on - ours (`vbs_backup.*`), httpx's, httpcore's and its children's (`httpcore.http11`
logs response headers, `X-Subject-Token` among them, at DEBUG), Prefect's, the root's - is cleaned before
any handler sees it: Prefect's console and API handlers (the API one writes to Prefect's database), a file,
pytest's capture. Its message (with its arguments merged in), exception text and stack text get:

* the values of token and credential headers (`X-Subject-Token`, `X-Auth-Token`, `X-Security-Token`,
  `Authorization`, `Proxy-Authorization`) in any spelling a log line carries them: httpcore's
  `(b'X-Subject-Token', b'...')`, a dict or JSON `'X-Auth-Token': '...'`, a header line `Authorization: ...`
  or `X-Auth-Token=...`;
* AK/SK signature parts (`SDK-HMAC-SHA256 Access=..., SignedHeaders=..., Signature=...`, a bare
  `Signature=<hex>`), `Bearer` tokens and IAM tokens themselves (`MII...`, however they got there);
* secret-named JSON fields (`"password": "..."`, `"sk"`, ...) and the password of a URL (`user:pw@host`);
* every value handed to `register_secret` (the SK and the IAM password, by `connect`) wherever it appears.

Each becomes `***`. Why the record factory and not a `logging.Filter` on loggers and handlers: a filter on a
logger does not see the records of its children (httpcore's are `httpcore.http11`, `httpcore.connection`),
and Prefect builds its handlers itself (at import and again when it reconfigures logging), so a filter on
them would have to be re-attached to handlers that do not exist yet. Every record goes through the factory,
whatever the configuration. `RedactingFilter` does the same cleaning for a handler or logger of one's own
(e.g. in a process that replaces the record factory after us).
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

__all__ = ["RedactingFilter", "install", "installed", "redact", "redact_record", "register_secret"]

MASK = "***"
# Shorter values are too likely to occur in ordinary text to be replaced wherever they appear.
MIN_SECRET_LENGTH = 6

_HEADERS = ("proxy-authorization", "authorization", "x-subject-token", "x-auth-token", "x-security-token")
_HEADER = "|".join(re.escape(h) for h in _HEADERS)
_FIELDS = (
    "password",
    "passwd",
    "sk",
    "secret",
    "secret_key",
    "secret_access_key",
    "access_token",
    "security_token",
    "securitytoken",
    "token_value",
)
_FIELD = "|".join(re.escape(f) for f in sorted(_FIELDS, key=len, reverse=True))
# A quoted value, escapes included: 'a\'b', "a\"b", b'...'.
_QUOTED_VALUE = r"""b?(?P<vq>['"])(?:\\.|(?!(?P=vq)).)*(?P=vq)"""


def _requote(match: re.Match[str]) -> str:
    """Name and separator, then the mask in the quotes (and bytes prefix) the value had."""
    quoted = match[0][len(match["name"]) :]
    prefix = "b" if quoted.startswith("b") else ""
    return f"{match['name']}{prefix}{match['vq']}{MASK}{match['vq']}"


_RULES: list[tuple[re.Pattern[str], Any]] = [
    # (b'X-Subject-Token', b'MII...')   'X-Auth-Token': '...'   "authorization": "..."
    (
        re.compile(rf"""(?P<name>b?(?P<q>['"])(?:{_HEADER})(?P=q)\s*[:,=]\s*){_QUOTED_VALUE}""", re.I),
        _requote,
    ),
    # "password": "..."   'sk': '...'
    (re.compile(rf"""(?P<name>(?P<q>['"])(?:{_FIELD})(?P=q)\s*:\s*){_QUOTED_VALUE}""", re.I), _requote),
    # Authorization: SDK-HMAC-SHA256 Access=..., SignedHeaders=..., Signature=...   (a header line)
    (re.compile(rf"(?<![\w-])(?P<name>(?:{_HEADER})\s*:[ \t]*)[^\r\n]+", re.I), lambda m: m["name"] + MASK),
    # X-Auth-Token=...
    (re.compile(rf"(?<![\w-])(?P<name>(?:{_HEADER})\s*=\s*)[^\s&,;'\"]+", re.I), lambda m: m["name"] + MASK),
    # the AK/SK Authorization value on its own, and any signature
    (re.compile(r"SDK-HMAC-SHA256\s+[^\r\n'\"]+", re.I), lambda m: "SDK-HMAC-SHA256 " + MASK),
    (re.compile(r"(?<![\w-])(?P<name>Signature=)[0-9a-fA-F]{16,}"), lambda m: m["name"] + MASK),
    (re.compile(r"(?<![\w-])(?P<name>Bearer\s+)[A-Za-z0-9._~+/-]{8,}=*", re.I), lambda m: m["name"] + MASK),
    # An IAM token (PKI tokens start "MII" and run to kilobytes) wherever it ended up.
    (re.compile(r"(?<![A-Za-z0-9+/_-])MII[A-Za-z0-9+/=_-]{60,}"), lambda m: MASK),
    # scheme://user:password@host
    (
        re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]+:)[^\s@/'\"]+(?=@)"),
        lambda m: m["head"] + MASK,
    ),
]

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()
_secret_pattern: re.Pattern[str] | None = None


def register_secret(value: str | None) -> None:
    """Mask `value` wherever it appears in a log from now on (values shorter than MIN_SECRET_LENGTH are
    ignored: they would mask ordinary words)."""
    global _secrets, _secret_pattern
    if not value or len(value) < MIN_SECRET_LENGTH:
        return
    with _lock:
        if value in _secrets:
            return
        _secrets = _secrets | {value}
        ordered = sorted(_secrets, key=len, reverse=True)
        _secret_pattern = re.compile("|".join(re.escape(s) for s in ordered))


def redact(text: str) -> str:
    """`text` with every secret this module knows how to spot replaced by `***`."""
    if not text:
        return text
    pattern = _secret_pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for rule, replace in _RULES:
        text = rule.sub(replace, text)
    return text


_formatter = logging.Formatter()


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Clean `record` in place (message and arguments, exception and stack text) and return it."""
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: logging reports it with the arguments, so clean those
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(repr(a)) for a in record.args)
        elif record.args:
            record.args = (redact(repr(record.args)),)
    else:
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        text = _formatter.formatException(record.exc_info)
        cleaned = redact(text)
        if cleaned != text:
            # Formatters print exc_text as it is; without exc_info nobody can render the original again.
            record.exc_info, record.exc_text = None, cleaned
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


class RedactingFilter(logging.Filter):
    """A filter that cleans each record (see module docs) and lets it through."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def _redacting(factory: Any) -> Any:
    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(factory(*args, **kwargs))

    make_record.vbs_backup_redacting = True  # type: ignore[attr-defined]
    make_record.wrapped = factory  # type: ignore[attr-defined]
    return make_record


def installed() -> bool:
    return bool(getattr(logging.getLogRecordFactory(), "vbs_backup_redacting", False))


def install() -> None:
    """Clean every log record created in this process from now on. Idempotent; re-installs itself when
    someone replaced the record factory since."""
    with _lock:
        if not installed():
            logging.setLogRecordFactory(_redacting(logging.getLogRecordFactory()))
