"""Delivery of the month's call list by email (``[notify]``, ``tiers notify``).

After a month loads, each recipient gets one message with the month's alerts that concern
them: a short HTML summary (and the same as plain text) with the list, and the list as a
CSV attachment (exact decimals). Routing: with a customer attributes source, each
customer's alerts go to the address in its routing column (``notify.route_by``, default
``owner_email``); customers without one go to the default recipients, who always get a
message (an empty list says the month loaded without alerts for them). Without a customer
attributes source every alert goes to the default recipients.

Nothing is sent twice: every accepted message is recorded at once in the ledger
``<runs.root>/notify/month=YYYY-MM.json`` (recipient -> when, message id, alerts), and a
recipient already in it is skipped unless ``resend``. A lock file serializes deliveries.
A message the server accepted just before a crash may be sent again (at least once).

The SMTP password comes only from the environment variable named by
``notify.password_env``; it never appears in files, messages or logs. A failing server
raises ``NotifyError`` naming host:port, the cause and the fix; the month stays loaded
(delivery never touches the warehouse). The run's step that calls it is
``pipeline.run.steps.notify_step``.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import re
import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from pipeline.config import Config
from pipeline.config.sections import NotifyConfig
from pipeline.deliver.call_list import (
    Call,
    build_calls,
    history_months,
    last_payment_dates,
    read_history,
)
from pipeline.deliver.report import template_environment
from pipeline.deliver.report_data import choose_metric
from pipeline.errors import NotifyError, NotifyServerError, ReportError
from pipeline.files import atomic_write
from pipeline.months import format_month
from pipeline.schema.inputs import ALL_METRICS
from pipeline.storage import location, scratch

CSV_COLUMNS = (
    "month",
    "metric",
    "customer_id",
    "name",
    "owner_email",
    "alert",
    "detail",
    "value_at_stake",
    "last_payment",
)
# after the six months' values: the order and the risk (customer_call; empty for a month
# loaded before it existed)
CALL_COLUMNS = ("call_rank", "priority", "p_alive", "value_at_risk", "call_reason")


EMAIL = re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+")


@dataclass
class Outcome:
    month: date
    metric: str
    sent: dict[str, int] = field(default_factory=dict)  # recipient -> alerts in the message
    skipped: list[str] = field(default_factory=list)  # already sent earlier
    ledger: Path | None = None
    unroutable: dict[str, str] = field(default_factory=dict)  # customer -> bad owner value

    def lines(self) -> list[str]:
        m = format_month(self.month)
        out = [f"{m}: sent to {r} ({n} alert(s) by {self.metric})" for r, n in self.sent.items()]
        out += [
            f"{m}: {r} already has this month (use --resend to send again)" for r in self.skipped
        ]
        out += [
            f"{m}: warning: {c}'s owner {o!r} is not an email address; sent to the defaults"
            for c, o in sorted(self.unroutable.items())
        ]
        if not out:
            out.append(f"{m}: nobody to send to")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "month": format_month(self.month),
            "metric": self.metric,
            "sent": self.sent,
            "skipped": self.skipped,
            "ledger": str(self.ledger) if self.ledger else None,
            "unroutable": self.unroutable,
        }


def ledger_path(cfg: Config, month: date) -> Path:
    return location(cfg.runs.root) / "notify" / f"month={format_month(month)}.json"


def read_ledger(cfg: Config, month: date) -> dict[str, dict]:
    path = ledger_path(cfg, month)
    return json.loads(path.read_text())["sent"] if path.exists() else {}


def plan(cfg: Config, month: date) -> tuple[str, dict[str, list[Call]], dict[str, str]]:
    """The metric, per recipient the calls of the month that concern them, and the
    customers whose routing value is not an address (their calls go to the defaults)."""
    from pipeline.sources.customers import attributes_by_customer, read_customers
    from pipeline.warehouse import open_warehouse

    notify = _settings(cfg)
    warehouse = open_warehouse(cfg)
    try:
        summary = warehouse.read_table("pareto_summary", month).to_pylist()
        if not summary:
            raise NotifyError(
                f"month {format_month(month)} is not loaded in the warehouse: nothing to send "
                f"(run `tiers run --month {format_month(month)}` first)"
            )
        available = [m for m in ALL_METRICS if any(r["metric"] == m for r in summary)]
        try:
            metric = choose_metric(cfg, available, notify.metric)
        except ReportError as exc:
            raise NotifyError(f"notify.metric: {exc}") from None
        alerts = warehouse.read_table("customer_alert", month)
        scores = warehouse.read_table("customer_call", month)
        history = read_history(warehouse, month)
    finally:
        warehouse.close()
    ids = {r["customer_id"] for r in alerts.to_pylist() if r["metric"] == metric}
    customers = read_customers(cfg)
    route = notify.route_by or ("owner_email" if customers is not None else None)
    if customers is not None and route not in customers.column_names:
        raise NotifyError(
            f"notify.route_by = {route!r}: the customer attributes have no such column "
            f"(they have {customers.column_names})"
        )
    attributes = attributes_by_customer(customers, ids)
    last_paid = last_payment_dates(cfg.lake.root, month, ids, cfg.business.timezone)
    calls = build_calls(month, metric, alerts, history, last_paid, attributes, scores)

    recipients: dict[str, list[Call]] = {r: [] for r in notify.recipients}
    unroutable: dict[str, str] = {}
    for call in calls:
        owner = (attributes.get(call.customer_id, {}).get(route) or "").strip() if route else ""
        if owner and not EMAIL.fullmatch(owner):
            unroutable[call.customer_id] = owner  # a typo in the CRM must not hide the call
            owner = ""
        for recipient in [owner] if owner else notify.recipients:
            recipients.setdefault(recipient, []).append(call)
    return metric, recipients, unroutable


def send_month(cfg: Config, month: date, *, resend: bool = False) -> Outcome:
    """Send each recipient their part of the month's call list, once (see the module)."""
    notify = _settings(cfg)
    password = _password(notify)
    metric, recipients, unroutable = plan(cfg, month)
    outcome = Outcome(month, metric, ledger=ledger_path(cfg, month), unroutable=unroutable)
    with _locked(cfg):
        done = read_ledger(cfg, month)
        todo = {}
        for recipient, calls in sorted(recipients.items()):
            if recipient in done and not resend:
                outcome.skipped.append(recipient)
            else:
                todo[recipient] = calls
        if not todo:
            return outcome
        with _connection(notify, password, month, len(todo)) as smtp:
            for recipient, calls in todo.items():
                message = compose(cfg, month, metric, recipient, calls)
                try:
                    smtp.send_message(message)
                except (smtplib.SMTPException, OSError) as exc:
                    raise _server_error(notify, month, exc, outcome, len(todo)) from None
                done[recipient] = {
                    "sent_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "message_id": message["Message-ID"],
                    "metric": metric,
                    "alerts": len(calls),
                }
                _write_ledger(cfg, month, done)
                outcome.sent[recipient] = len(calls)
    return outcome


def _settings(cfg: Config) -> NotifyConfig:
    if cfg.notify is None:
        raise NotifyError("no [notify] section in the configuration: nothing to send with")
    return cfg.notify


def _password(notify: NotifyConfig) -> str | None:
    if notify.username is None:
        return None
    password = os.environ.get(notify.password_env)
    if not password:
        raise NotifyError(
            f"notify.username is set but the environment variable {notify.password_env} "
            "(notify.password_env) holds no password: set it where the pipeline runs"
        )
    return password


@contextmanager
def _connection(
    notify: NotifyConfig, password: str | None, month: date, n_todo: int
) -> Iterator[smtplib.SMTP]:
    where = f"{notify.host}:{notify.port}"
    try:
        if notify.tls == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                notify.host,
                notify.port,
                timeout=notify.timeout_seconds,
                context=ssl.create_default_context(),
            )
        else:
            smtp = smtplib.SMTP(notify.host, notify.port, timeout=notify.timeout_seconds)
        with smtp:
            if notify.tls == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if notify.username is not None:
                smtp.login(notify.username, password or "")
            yield smtp
    except NotifyError:
        raise
    except (smtplib.SMTPException, OSError) as exc:
        raise NotifyServerError(
            f"cannot deliver the {format_month(month)} call list through the SMTP server "
            f"{where} ({notify.tls}): {_cause(exc)}. Nothing more was sent ({n_todo} "
            f"recipient(s) left); check [notify] host, port, tls, username and "
            f"${notify.password_env}, or the server, then run `tiers notify --month "
            f"{format_month(month)}` again. The month stays loaded."
        ) from None


def _server_error(
    notify: NotifyConfig, month: date, exc: BaseException, outcome: Outcome, n_todo: int
) -> NotifyServerError:
    left = n_todo - len(outcome.sent)
    return NotifyServerError(
        f"the SMTP server {notify.host}:{notify.port} refused the {format_month(month)} call "
        f"list: {_cause(exc)}. {len(outcome.sent)} message(s) sent and recorded, {left} not "
        f"sent; fix the server or the addresses, then run `tiers notify --month "
        f"{format_month(month)}` again (recipients already served are skipped). "
        "The month stays loaded."
    )


def _cause(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
        return f"{exc.smtp_code} {text}".strip()
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "recipient(s) refused: " + ", ".join(sorted(exc.recipients))
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@contextmanager
def _locked(cfg: Config) -> Iterator[None]:
    # the ledger's lock; with the runs on an object store it is a local file, which
    # serialises the notify steps of one machine (Airflow runs one per month)
    folder = scratch(cfg.runs.root) / "notify"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_ledger(cfg: Config, month: date, sent: dict[str, dict]) -> None:
    document = {"month": format_month(month), "sent": sent}
    atomic_write(ledger_path(cfg, month), json.dumps(document, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------- the message


def call_list_csv(month: date, calls: list[Call]) -> str:
    """The calls (to call and to watch) as CSV: exact values, the six months' values as
    their own columns, then the call order, priority and risk."""
    months = [m for m, _ in calls[0].last_months] if calls else history_months(month)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([*CSV_COLUMNS, *(f"value_{format_month(m)}" for m in months), *CALL_COLUMNS])
    for c in calls:
        writer.writerow(
            [
                month.isoformat(),
                c.metric,
                c.customer_id,
                c.name or "",
                c.owner_email or "",
                c.alert,
                c.detail,
                str(c.value_at_stake),
                c.last_payment.isoformat() if c.last_payment else "",
                *(str(v) for _, v in c.last_months),
                "" if c.call_rank is None else str(c.call_rank),
                c.priority,
                "" if c.p_alive is None else repr(c.p_alive),
                "" if c.value_at_risk is None else str(c.value_at_risk),
                c.call_reason or "",
            ]
        )
    return buffer.getvalue()


def compose(cfg: Config, month: date, metric: str, recipient: str, calls: list[Call]):
    notify = _settings(cfg)
    env = template_environment()
    integer = metric in ("payments", "units")
    env.filters["value"] = lambda v: f"{int(v):,}" if integer else f"{v:,.2f}"
    # the body lists the calls; the watch rows (likely back, or past the caps) are only
    # counted there and listed in the CSV with the calls
    to_call = [c for c in calls if c.priority == "call"]
    context = {
        "month": format_month(month),
        "metric": metric,
        "calls": to_call,
        "n_watch": len(calls) - len(to_call),
        "scored": any(c.call_rank is not None for c in calls),  # else a month before
        "currency": "" if integer else cfg.business.currency,
    }
    name = format_month(month)
    message = EmailMessage()
    message["Subject"] = (
        f"{notify.subject_prefix} {name}: {len(to_call)} customer(s) to call ({metric})"
    )
    message["From"] = notify.sender
    message["To"] = recipient
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid("tiers", domain=notify.sender.rsplit("@", 1)[-1])
    message.set_content(env.get_template("notify.txt.j2").render(**context))
    message.add_alternative(env.get_template("notify.html.j2").render(**context), subtype="html")
    message.add_attachment(
        call_list_csv(month, calls).encode(),
        maintype="text",
        subtype="csv",
        filename=f"call-list-{name}-{metric}.csv",
    )
    return message
