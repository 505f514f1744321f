"""Delivery of the call list against a real SMTP server (aiosmtpd on 127.0.0.1): the
right recipients, the attachment's rows equal customer_alert, no duplicate sends, and a
failing server gives a clear error while the month stays loaded."""

from __future__ import annotations

import csv
import io
import json
import socket
import ssl
import subprocess
from decimal import Decimal
from email import message_from_bytes, policy
from html import unescape

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.deliver.call_list import history_months
from pipeline.deliver.notify import CSV_COLUMNS, NotifyError, ledger_path, send_month
from pipeline.errors import PERMANENT, TRANSIENT, classify
from pipeline.months import format_month
from pipeline.run.steps import notify_step
from pipeline.warehouse import open_warehouse

from month_support import FULL_LAST, reconfigured

pytestmark = pytest.mark.slow

TEAM = "sales-team@example.com"
MONTH = "2026-03"


class Mailbox:
    """An aiosmtpd handler that keeps what it accepts, or refuses some recipients."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []
        self.refuse: set[str] = set()

    async def handle_DATA(self, server, session, envelope):
        if self.refuse & set(envelope.rcpt_tos):
            return "554 5.7.1 delivery refused by policy"
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"

    def by_recipient(self) -> dict[str, list]:
        out: dict[str, list] = {}
        for recipients, content in self.messages:
            for r in recipients:
                out.setdefault(r, []).append(message_from_bytes(content, policy=policy.default))
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp():
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    mailbox.port = port
    try:
        yield mailbox
    finally:
        controller.stop()


def configured(full_case, folder, port, **notify):
    settings = {
        "host": "127.0.0.1",
        "port": port,
        "tls": "none",
        "sender": "tiers@example.com",
        "recipients": [TEAM],
        "timeout_seconds": 10,
    } | notify
    return reconfigured(full_case, folder, notify=settings)


def alerts_of(cfg, metric="revenue") -> list[dict]:
    warehouse = open_warehouse(cfg)
    try:
        rows = warehouse.read_table("customer_alert", FULL_LAST).to_pylist()
    finally:
        warehouse.close()
    return [r for r in rows if r["metric"] == metric]


def calls_of(cfg, metric="revenue") -> dict[tuple[str, str], dict]:
    """customer_call of the month: (customer, alert) -> its row."""
    warehouse = open_warehouse(cfg)
    try:
        rows = warehouse.read_table("customer_call", FULL_LAST).to_pylist()
    finally:
        warehouse.close()
    return {(r["customer_id"], r["alert"]): r for r in rows if r["metric"] == metric}


def attachment_rows(message) -> list[dict]:
    (part,) = [p for p in message.iter_attachments() if p.get_content_type() == "text/csv"]
    return list(csv.DictReader(io.StringIO(part.get_content())))


def key(row) -> tuple:
    return (row["month"], row["metric"], row["customer_id"], row["alert"], row["detail"])


def test_each_owner_gets_their_customers_once(full_case, tmp_path, smtp) -> None:
    cfg = configured(full_case, tmp_path, smtp.port)
    outcome = send_month(cfg, FULL_LAST)
    alerts = alerts_of(cfg)
    owners = {"k00013": "anna@example.com", "k00032": "ben@example.com"}
    expected = {}
    for a in alerts:
        expected.setdefault(owners.get(a["customer_id"], TEAM), []).append(a)
    assert set(expected) == {"anna@example.com", "ben@example.com", TEAM}

    received = smtp.by_recipient()
    assert {r: len(m) for r, m in received.items()} == {r: 1 for r in expected}
    assert outcome.sent == {r: len(rows) for r, rows in expected.items()}
    scores = calls_of(cfg)
    assert {r["priority"] for r in scores.values()} == {"call", "watch"}
    columns = [*CSV_COLUMNS, *(f"value_{format_month(m)}" for m in history_months(FULL_LAST))]
    for recipient, (message,) in received.items():
        assert message["To"] == recipient and message["From"] == "tiers@example.com"
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        rows = attachment_rows(message)
        # the CSV: every alert of the recipient, call and watch, in call_rank order, with
        # the existing columns first and the order and risk after them
        (part,) = [p for p in message.iter_attachments() if p.get_content_type() == "text/csv"]
        header = part.get_content().splitlines()[0].split(",")
        assert header == [
            *columns,
            "call_rank",
            "priority",
            "p_alive",
            "value_at_risk",
            "call_reason",
        ]
        assert sorted(key(r) for r in rows) == sorted(
            (a["month"].isoformat(), a["metric"], a["customer_id"], a["alert"], a["detail"])
            for a in expected[recipient]
        )
        ranks = [int(r["call_rank"]) for r in rows]
        assert ranks == sorted(ranks)
        for r in rows:
            score = scores[(r["customer_id"], r["alert"])]
            assert int(r["call_rank"]) == score["call_rank"]
            assert r["priority"] == score["priority"]
            assert float(r["p_alive"]) == score["p_alive"]
            assert Decimal(r["value_at_risk"]) == score["value_at_risk"]
            assert r["call_reason"] == score["call_reason"]
        # the body: the recipient's 'call' rows only, with their reason; the subject counts them
        to_call = [r for r in rows if r["priority"] == "call"]
        watched = [r for r in rows if r["priority"] == "watch"]
        assert f"{MONTH}: {len(to_call)} customer(s) to call (revenue)" in message["Subject"]
        for r in to_call:
            assert f'data-customer-id="{r["customer_id"]}"' in html
            assert r["call_reason"] in unescape(html)
            assert r["customer_id"] in text and r["call_reason"] in text
        for r in watched:
            assert r["customer_id"] not in html and r["customer_id"] not in text
        if watched:
            assert f"{len(watched)} more to watch" in html or f"{len(watched)} to watch" in html
    # the golden month: the team has a call and a watch row, anna and ben only watch rows
    team = attachment_rows(received[TEAM][0])
    assert {r["priority"] for r in team} == {"call", "watch"}
    assert received["anna@example.com"][0]["Subject"].endswith(": 0 customer(s) to call (revenue)")
    assert "No customer to call this month" in (
        received["anna@example.com"][0].get_body(("plain",)).get_content()
    )
    anna = attachment_rows(received["anna@example.com"][0])
    assert [(r["name"], r["owner_email"]) for r in anna] == [
        ("Fjord Bakery AS", "anna@example.com")
    ]
    assert anna[0]["last_payment"] == "2026-02-28"

    ledger = json.loads(ledger_path(cfg, FULL_LAST).read_text())
    assert set(ledger["sent"]) == set(expected)

    # nothing is sent twice, from the API or the command line
    again = send_month(cfg, FULL_LAST)
    assert again.sent == {} and sorted(again.skipped) == sorted(expected)
    result = CliRunner().invoke(
        app, ["notify", "--config", str(tmp_path / "tiers.toml"), "--month", MONTH]
    )
    assert result.exit_code == 0, result.output
    assert "already has this month" in result.output
    assert len(smtp.messages) == 3

    # unless asked
    result = CliRunner().invoke(
        app, ["notify", "--config", str(tmp_path / "tiers.toml"), "--month", MONTH, "--resend"]
    )
    assert result.exit_code == 0, result.output
    assert len(smtp.messages) == 6


def test_without_customer_attributes_everything_goes_to_the_team(full_case, tmp_path, smtp):
    cfg = configured(full_case, tmp_path, smtp.port, recipients=[TEAM, "cfo@example.com"])
    cfg.customers = None
    outcome = send_month(cfg, FULL_LAST)
    alerts = alerts_of(cfg)
    assert outcome.sent == {TEAM: len(alerts), "cfo@example.com": len(alerts)}
    for (message,) in smtp.by_recipient().values():
        assert len(attachment_rows(message)) == len(alerts)


def test_a_server_that_is_down_gives_a_clear_error_and_the_month_stays_loaded(
    full_case, tmp_path
) -> None:
    port = free_port()  # nothing listens there
    cfg = configured(full_case, tmp_path, port)
    warehouse = open_warehouse(cfg)
    try:
        run_id = warehouse.read_table("pipeline_run", FULL_LAST).to_pylist()[0]["run_id"]
    finally:
        warehouse.close()
    with pytest.raises(NotifyError) as caught:
        notify_step(cfg, FULL_LAST, run_id)
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "ConnectionRefusedError" in message
    assert "tiers notify --month 2026-03" in message and "stays loaded" in message
    assert "\n" not in message
    assert classify(caught.value) == TRANSIENT  # the DAG retries: the ledger sends what is left
    assert not ledger_path(cfg, FULL_LAST).exists()
    state = json.loads((tmp_path / "runs" / run_id / "month=2026-03" / "run.json").read_text())
    assert state["notify_error"] == message
    warehouse = open_warehouse(cfg)
    try:
        runs = warehouse.read_table("pipeline_run", FULL_LAST).to_pylist()
        assert [r["status"] for r in runs] == ["loaded"]
        assert warehouse.read_table("customer_alert", FULL_LAST).num_rows > 0
    finally:
        warehouse.close()

    result = CliRunner().invoke(
        app, ["notify", "--config", str(tmp_path / "tiers.toml"), "--month", MONTH]
    )
    assert result.exit_code == 1
    assert f"127.0.0.1:{port}" in result.output


def test_a_refusing_server_stops_and_a_retry_sends_only_the_rest(full_case, tmp_path, smtp):
    cfg = configured(full_case, tmp_path, smtp.port)
    smtp.refuse = {"ben@example.com"}  # recipients go in order: anna, ben, team
    with pytest.raises(NotifyError, match="554 5.7.1 delivery refused by policy") as caught:
        send_month(cfg, FULL_LAST)
    assert "1 message(s) sent and recorded, 2 not sent" in str(caught.value)
    assert [r for r, _ in smtp.messages] == [["anna@example.com"]]
    smtp.refuse = set()
    outcome = send_month(cfg, FULL_LAST)
    assert sorted(outcome.sent) == ["ben@example.com", TEAM]
    assert outcome.skipped == ["anna@example.com"]
    assert sorted(r for (r,), _ in smtp.messages) == ["anna@example.com", "ben@example.com", TEAM]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_credentials_come_only_from_the_environment(full_case, tmp_path, monkeypatch) -> None:
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"s3cret-from-env", handled=False)

    mailbox, port = Mailbox(), free_port()
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticator,
        auth_require_tls=False,  # a test server on loopback: no certificate to offer
        auth_required=True,
        auth_exclude_mechanism=["LOGIN"],  # smtplib then tries PLAIN alone
    )
    controller.start()
    try:
        cfg = configured(full_case, tmp_path, port, username="tiers", password_env="TEST_SMTP_PW")
        monkeypatch.delenv("TEST_SMTP_PW", raising=False)
        with pytest.raises(NotifyError, match="TEST_SMTP_PW") as caught:
            send_month(cfg, FULL_LAST)
        assert classify(caught.value) == PERMANENT  # the setting must change first
        assert logins == []  # nothing was tried without the password

        monkeypatch.setenv("TEST_SMTP_PW", "wrong")
        with pytest.raises(NotifyError, match="535") as caught:
            send_month(cfg, FULL_LAST)
        assert "wrong" not in str(caught.value)

        monkeypatch.setenv("TEST_SMTP_PW", "s3cret-from-env")
        assert len(send_month(cfg, FULL_LAST).sent) == 3
        assert logins[-1] == (b"tiers", b"s3cret-from-env")
        assert len(mailbox.messages) == 3
    finally:
        controller.stop()
    assert "s3cret" not in (tmp_path / "tiers.toml").read_text()
    assert "s3cret" not in ledger_path(cfg, FULL_LAST).read_text()


def test_an_owner_that_is_not_an_address_goes_to_the_team(full_case, tmp_path, smtp) -> None:
    (tmp_path / "crm.csv").write_text(
        "id,display_name,account_manager\nk00013,Fjord Bakery AS,anna@example.com\n"
        "k00032,Nordlys Tools,ben at example\n"
    )
    cfg = reconfigured(
        full_case,
        tmp_path,
        customers={"path": str(tmp_path / "crm.csv")},
        notify={
            "host": "127.0.0.1",
            "port": smtp.port,
            "tls": "none",
            "sender": "tiers@example.com",
            "recipients": [TEAM],
        },
    )
    outcome = send_month(cfg, FULL_LAST)
    assert outcome.unroutable == {"k00032": "ben at example"}
    assert sorted(outcome.sent) == ["anna@example.com", TEAM]
    (team,) = smtp.by_recipient()[TEAM]
    assert "k00032" in {r["customer_id"] for r in attachment_rows(team)}
    assert any("'ben at example' is not an email address" in line for line in outcome.lines())


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (openssl), which clients trust through
    SSL_CERT_FILE, as they would a company's own certificate authority."""
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return cert, context


def test_starttls_with_login_and_implicit_tls(full_case, tmp_path, monkeypatch, certificate):
    cert, server_context = certificate
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append(session.ssl is not None)  # the password only ever crosses TLS
        return AuthResult(success=auth_data.password == b"pw", handled=False)

    monkeypatch.setenv("TEST_SMTP_PW", "pw")
    (tmp_path / "starttls").mkdir()
    (tmp_path / "ssl").mkdir()
    starttls, port = Mailbox(), free_port()
    controller = Controller(
        starttls,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    controller.start()
    try:
        cfg = configured(
            full_case,
            tmp_path / "starttls",
            port,
            tls="starttls",
            username="tiers",
            password_env="TEST_SMTP_PW",
        )
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        with pytest.raises(NotifyError, match="CERTIFICATE_VERIFY_FAILED"):
            send_month(cfg, FULL_LAST)  # an unknown certificate is refused, not ignored
        assert starttls.messages == []
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        assert len(send_month(cfg, FULL_LAST).sent) == 3
        assert len(starttls.messages) == 3 and logins and all(logins)
    finally:
        controller.stop()

    implicit, port = Mailbox(), free_port()
    controller = Controller(implicit, hostname="127.0.0.1", port=port, ssl_context=server_context)
    controller.start()
    try:
        cfg = configured(full_case, tmp_path / "ssl", port, tls="ssl")
        assert len(send_month(cfg, FULL_LAST).sent) == 3
        assert len(implicit.messages) == 3
    finally:
        controller.stop()
