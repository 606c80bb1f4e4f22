"""The e-mail hook against a real SMTP relay on 127.0.0.1 that speaks STARTTLS and implicit TLS with
certificates made here: the password goes only to a relay whose certificate is trusted and names the host,
only over TLS, and never in clear. No Prefect server needed."""

from __future__ import annotations

import base64
import email
import email.policy
import ipaddress
import logging
import queue
import socket
import socketserver
import ssl
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vbs_backup.flows.hooks import email_on_failure
from vbs_backup.notify import SmtpConfig, SmtpSecurityError

USER, PASSWORD = "mailer", "hunter2-smtp-password"
WAIT = 10  # seconds: an upper bound for the relay's session to end, never a sleep


# ------------------------------------------------------------------------------------------ certificates


def make_certificate(directory: Path, *, dns: list[str] = (), ips: list[str] = ()) -> tuple[Path, Path]:
    """A self-signed certificate for exactly these names: (certificate PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vbs-backup test relay")])
    alt = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    stem = "-".join([*dns, *ips]).replace(":", "_")
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


# ------------------------------------------------------------------------------------------ the relay


@dataclass
class Session:
    """What one connection did: command verbs in order, credentials received (with whether the
    connection was encrypted at that moment), messages, and how TLS went."""

    commands: list[str] = field(default_factory=list)
    logins: list[tuple[bool, str]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    tls: bool = False
    tls_error: str | None = None


class SmtpRelay(socketserver.ThreadingTCPServer):
    """Enough ESMTP for smtplib: EHLO (offering STARTTLS before TLS, and AUTH PLAIN LOGIN always, as a
    careless relay would), STARTTLS, AUTH PLAIN, MAIL, RCPT, DATA, QUIT; or implicit TLS from the start."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, cert: tuple[Path, Path], *, implicit_tls: bool = False, starttls: bool = True):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(*cert)
        self.implicit_tls = implicit_tls
        self.offer_starttls = starttls
        self.started: queue.Queue[Session] = queue.Queue()  # put before the greeting
        self.finished: queue.Queue[Session] = queue.Queue()
        super().__init__(("127.0.0.1", 0), _RelaySession)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def next_session(self) -> Session:
        return self.finished.get(timeout=WAIT)


class _RelaySession(socketserver.BaseRequestHandler):
    server: SmtpRelay

    def handle(self) -> None:
        session = Session()
        self.server.started.put(session)
        self.sock: socket.socket = self.request
        try:
            if self.server.implicit_tls:
                self.sock = self.server.context.wrap_socket(self.sock, server_side=True)
                session.tls = True
            self._converse(session)
        except (ssl.SSLError, OSError) as exc:
            session.tls_error = f"{type(exc).__name__}: {exc}"
        finally:
            self.sock.close()  # the TLS socket, when there is one (socketserver closes the plain one)
            self.server.finished.put(session)

    def _converse(self, session: Session) -> None:
        sock = self.sock
        reader = sock.makefile("rb")
        sock.sendall(b"220 relay.test ESMTP\r\n")
        data: list[str] | None = None
        while line := reader.readline():
            text = line.decode().rstrip("\r\n")
            if data is not None:
                if text == ".":
                    session.messages.append("\n".join(data))
                    data = None
                    sock.sendall(b"250 queued\r\n")
                else:
                    data.append(text[1:] if text.startswith("..") else text)
                continue
            verb = text.split(" ", 1)[0].upper()
            session.commands.append(verb)
            if verb in ("EHLO", "HELO"):
                offer = [b"250-relay.test"]
                if self.server.offer_starttls and not session.tls:
                    offer.append(b"250-STARTTLS")
                offer.append(b"250 AUTH PLAIN LOGIN")
                sock.sendall(b"\r\n".join(offer) + b"\r\n")
            elif verb == "STARTTLS" and self.server.offer_starttls and not session.tls:
                sock.sendall(b"220 go ahead\r\n")
                reader.close()
                sock = self.sock = self.server.context.wrap_socket(sock, server_side=True)
                session.tls = True
                reader = sock.makefile("rb")
            elif verb == "AUTH":
                _, mechanism, *initial = text.split(" ")
                if mechanism.upper() != "PLAIN" or not initial:
                    sock.sendall(b"504 PLAIN with an initial response only\r\n")
                    continue
                session.logins.append((session.tls, base64.b64decode(initial[0]).decode()))
                sock.sendall(b"235 authenticated\r\n")
            elif verb == "DATA":
                data = []
                sock.sendall(b"354 end with .\r\n")
            elif verb == "QUIT":
                sock.sendall(b"221 bye\r\n")
                return
            elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                sock.sendall(b"250 ok\r\n")
            else:
                sock.sendall(b"502 not implemented\r\n")


@pytest.fixture
def serve_relay() -> Iterator:
    relays: list[SmtpRelay] = []

    def start(cert: tuple[Path, Path], **options: bool) -> SmtpRelay:
        relay = SmtpRelay(cert, **options)
        threading.Thread(target=relay.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        relays.append(relay)
        return relay

    yield start
    for relay in relays:
        relay.shutdown()
        relay.server_close()


@pytest.fixture
def smtp_env(monkeypatch: pytest.MonkeyPatch):
    for name in ("SSL", "STARTTLS", "CA_FILE", "USERNAME", "PASSWORD", "FROM", "PORT"):
        monkeypatch.delenv(f"VBS_BACKUP_SMTP_{name}", raising=False)

    def configure(relay: SmtpRelay, **settings: str) -> None:
        values = {"HOST": "127.0.0.1", "PORT": str(relay.port), "TO": "ops@example.com"}
        values |= {"USERNAME": USER, "PASSWORD": PASSWORD} | settings
        for name, value in values.items():
            monkeypatch.setenv(f"VBS_BACKUP_SMTP_{name}", value)

    return configure


def failed_run():
    flow = SimpleNamespace(name="nightly-backup")
    flow_run = SimpleNamespace(name="brave-otter", id=uuid.uuid4())
    state = SimpleNamespace(name="Failed", message="FAILED: db-01 /dev/vdb (failed: VolumeBackup.0064)")
    return flow, flow_run, state


def hook_log(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "vbs_backup.flows.hooks")


# ------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize(
    ("names", "trust_it"),
    [
        pytest.param({"dns": ["smtp.other.example"]}, True, id="trusted-certificate-for-another-name"),
        pytest.param({"ips": ["127.0.0.1"]}, False, id="right-name-but-untrusted-self-signed"),
    ],
)
def test_starttls_to_an_unverified_relay_refuses_before_auth(
    serve_relay, smtp_env, caplog, tmp_path, names, trust_it
):
    cert = make_certificate(tmp_path, **names)
    relay = serve_relay(cert)
    smtp_env(relay, STARTTLS="true", **({"CA_FILE": str(cert[0])} if trust_it else {}))

    with caplog.at_level(logging.ERROR, logger="vbs_backup.flows.hooks"):
        email_on_failure(*failed_run())

    session = relay.next_session()
    assert session.commands[-1] == "STARTTLS"  # nothing after the failed handshake: no AUTH, no mail
    assert session.logins == [] and session.messages == []
    assert session.tls_error is not None
    log_text = hook_log(caplog)
    assert "failure e-mail not sent" in log_text and "SSLCertVerificationError" in log_text
    assert PASSWORD not in log_text


def test_starttls_with_the_ca_file_and_the_right_name_logs_in_over_tls_and_sends(
    serve_relay, smtp_env, tmp_path
):
    cert = make_certificate(tmp_path, ips=["127.0.0.1"])
    relay = serve_relay(cert)
    smtp_env(relay, STARTTLS="true", CA_FILE=str(cert[0]))

    email_on_failure(*failed_run())

    session = relay.next_session()
    assert session.logins == [(True, f"\0{USER}\0{PASSWORD}")]
    assert session.commands.index("STARTTLS") < session.commands.index("AUTH")
    [raw] = session.messages
    message = email.message_from_string(raw, policy=email.policy.default)
    assert message["Subject"] == "vbs-backup: brave-otter (nightly-backup) is Failed"
    assert "FAILED: db-01 /dev/vdb" in message.get_content()


def test_implicit_tls_sends_over_tls_from_the_first_byte(serve_relay, smtp_env, tmp_path):
    cert = make_certificate(tmp_path, ips=["127.0.0.1"])
    relay = serve_relay(cert, implicit_tls=True)
    smtp_env(relay, SSL="true", CA_FILE=str(cert[0]))

    email_on_failure(*failed_run())

    session = relay.next_session()
    assert "STARTTLS" not in session.commands
    assert session.logins == [(True, f"\0{USER}\0{PASSWORD}")]
    assert len(session.messages) == 1


def test_implicit_tls_refuses_a_relay_with_a_certificate_for_another_name(
    serve_relay, smtp_env, caplog, tmp_path
):
    cert = make_certificate(tmp_path, dns=["smtp.other.example"])
    relay = serve_relay(cert, implicit_tls=True)
    smtp_env(relay, SSL="true", CA_FILE=str(cert[0]))

    with caplog.at_level(logging.ERROR, logger="vbs_backup.flows.hooks"):
        email_on_failure(*failed_run())

    session = relay.next_session()
    assert session.commands == [] and session.logins == [] and session.messages == []
    assert "SSLCertVerificationError" in hook_log(caplog)


def test_a_password_is_never_sent_without_tls(serve_relay, smtp_env, caplog, tmp_path):
    relay = serve_relay(make_certificate(tmp_path, ips=["127.0.0.1"]))
    smtp_env(relay)  # user and password, neither STARTTLS nor SSL

    with caplog.at_level(logging.ERROR, logger="vbs_backup.flows.hooks"):
        email_on_failure(*failed_run())

    # A session is registered before the relay greets, and smtplib says nothing before the greeting:
    # had the hook talked to the relay at all, the session would be there by now.
    assert relay.started.empty()
    log_text = hook_log(caplog)
    assert "not encrypted" in log_text and "VBS_BACKUP_SMTP_STARTTLS=true" in log_text
    assert PASSWORD not in log_text and USER not in log_text


def test_starttls_wanted_but_not_offered_sends_nothing(serve_relay, smtp_env, caplog, tmp_path):
    cert = make_certificate(tmp_path, ips=["127.0.0.1"])
    relay = serve_relay(cert, starttls=False)
    smtp_env(relay, STARTTLS="true", CA_FILE=str(cert[0]))

    with caplog.at_level(logging.ERROR, logger="vbs_backup.flows.hooks"):
        email_on_failure(*failed_run())

    session = relay.next_session()
    assert session.logins == [] and session.messages == []
    assert "failure e-mail not sent" in hook_log(caplog)


def test_without_credentials_plain_smtp_still_works(serve_relay, smtp_env, monkeypatch, tmp_path):
    relay = serve_relay(make_certificate(tmp_path, ips=["127.0.0.1"]))
    smtp_env(relay)
    monkeypatch.delenv("VBS_BACKUP_SMTP_USERNAME")
    monkeypatch.delenv("VBS_BACKUP_SMTP_PASSWORD")

    email_on_failure(*failed_run())

    session = relay.next_session()
    assert session.logins == [] and not session.tls and len(session.messages) == 1


def test_smtp_settings_port_465_means_implicit_tls_and_bad_combinations_are_refused():
    base = {"VBS_BACKUP_SMTP_HOST": "mail.example", "VBS_BACKUP_SMTP_TO": "ops@example.com"}
    config = SmtpConfig.from_env({**base, "VBS_BACKUP_SMTP_PORT": "465"})
    assert config is not None and config.implicit_tls and not config.starttls
    config = SmtpConfig.from_env({**base, "VBS_BACKUP_SMTP_PORT": "465", "VBS_BACKUP_SMTP_SSL": "false"})
    assert config is not None and not config.implicit_tls
    with pytest.raises(SmtpSecurityError, match="not both"):
        SmtpConfig.from_env({**base, "VBS_BACKUP_SMTP_SSL": "true", "VBS_BACKUP_SMTP_STARTTLS": "true"})
    with pytest.raises(SmtpSecurityError, match="VBS_BACKUP_SMTP_SSL must be true or false"):
        SmtpConfig.from_env({**base, "VBS_BACKUP_SMTP_SSL": "maybe"})
    with pytest.raises(SmtpSecurityError) as info:
        SmtpConfig.from_env({**base, "VBS_BACKUP_SMTP_USERNAME": USER, "VBS_BACKUP_SMTP_PASSWORD": PASSWORD})
    assert PASSWORD not in str(info.value)
