"""Chat messages in English and Korean: every message kind rendered in both languages, every
text it uses translated (the catalogue lookups are recorded), nothing over Google Chat's 32,000
bytes; the catalogue matches the code; a Korean chat block gets Korean messages end to end."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import jinja2
import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

import rules.messages
import rules.pipeline_failures
from blocks.google_chat import MAX_MESSAGE_BYTES, _size, chat_message
from rules.findings import Finding, Severity, Transitions
from rules.i18n import LANGUAGES, LOCALE_DIR, catalogue_path, translations
from rules.messages import (
    TaskFailure,
    actions_applied,
    approval_expired,
    approval_waiting,
    crashed_templates,
    findings_digest,
    flow_failure_message,
    refused_earlier_note,
    silent_deployment,
    store_down_note,
    truncated_note,
)
from rules.pipeline_failures import LogRecord, ReportPolicy, RunRecord, TaskRunRecord, report
from tasks.notify import emit_job_message

NOW = datetime(2026, 11, 25, 9, 30, tzinfo=timezone.utc)
LINK = "http://prefect.test/runs/flow-run/6f1c"
# Words our Korean text keeps on purpose: product names, and UTC.
KEPT = {"Prefect", "UI", "Google", "Chat", "UTC", "apply"}  # names; `apply` is the parameter


def _finding(i: int, severity: Severity = Severity.WARNING) -> Finding:
    return Finding(kind="unattached-volume", resource_id=f"vol-{i:04d}", scope="123456789012/eu-west-1",
                   severity=severity, reason=f"{100 + i} GiB gp2 volume attached to nothing " + "x" * 300,
                   monthly_cost_usd=10.0 + i)


def _run(**changes) -> RunRecord:
    base = dict(id="r1", name="amber-fox", flow_id="f1", flow_name="crm-export", deployment="nightly",
                state_type="FAILED", state_name="Failed", state_message="ValueError: bad row 17",
                owners=["111"], attempts=2, max_attempts=3, ended=NOW, scheduled=NOW - timedelta(minutes=30))
    return RunRecord(**{**base, **changes})


LOGS = [LogRecord(NOW, 40, "Traceback (most recent call last):\n  File \"x.py\"\nValueError: bad row 17", "t1"),
        *(LogRecord(NOW + timedelta(seconds=i), 20, "line " + "y" * 400) for i in range(300))]
TASKS = [TaskRunRecord("t1", "load", "load-0", "Failed", 3, 3)]
OFFERS = [SimpleNamespace(item_id=f"vol-{i}", scope="123456789012/eu-west-1", action="delete-volume",
                          monthly_usd=5.0 + i) for i in range(14)]


def _crashed(language: str) -> tuple[str, str]:
    """The Crashed automation's templates, rendered as the server would (same Jinja features)."""
    env = jinja2.Environment(undefined=jinja2.ChainableUndefined)
    env.filters["ui_url"] = lambda run: LINK
    context = dict(flow=SimpleNamespace(name="crm-export"), deployment=SimpleNamespace(name="nightly"),
                   flow_run=SimpleNamespace(name="amber-fox", tags=["owner:111"],
                                            state=SimpleNamespace(name="Crashed", message="killed by signal 9")))
    return tuple(env.from_string(t).render(**context) for t in crashed_templates(language))


# Every kind of message, as (subject, body) for a language; huge inputs where a message can grow.
KINDS: dict[str, Callable[[str], tuple[str, str]]] = {
    "digest": lambda lang: findings_digest("idle-resources", Transitions(
        opened=[_finding(i) for i in range(40)], escalated=[_finding(90, Severity.CRITICAL)],
        reminded=[_finding(91)], resolved=[f"idle-elastic-ip|123456789012/eu-west-1|eipalloc-{i}" for i in range(3)],
        still_open=[_finding(92)]), LINK, lang, planned=[f"would delete vol-{i} (1/eu-west-1)" for i in range(40)]),
    "failure": lambda lang: flow_failure_message(
        flow_name="idle-resources", flow_run_name="amber-fox", state_name="TimedOut",
        state_message="Flow run exceeded timeout of 150.0 second(s)", log_lines=["z" * 200] * 200,
        parameters={"regions": ["eu-west-1"], "store": "ops-store"}, deployment="idle-resources-daily",
        run_url=LINK, failure=TaskFailure("collect", "collect-eu-west-1", "NoAnswer: no answer in 60 s",
                                          ("Traceback (most recent call last):", "NoAnswer"), 2, 3),
        flow_attempt=(1, 2), owners=["111"], language=lang),
    "pipeline failure": lambda lang: report(_run(), TASKS, LOGS, LINK, NOW, ReportPolicy(log_lines=200), lang),
    "late run": lambda lang: report(_run(state_type="SCHEDULED", state_name="Late"), [], [], LINK, NOW,
                                    ReportPolicy(), lang),
    "late run, no schedule": lambda lang: report(_run(state_type="SCHEDULED", state_name="Late", scheduled=None,
                                                      deployment=None), [], [], None, NOW, ReportPolicy(), lang),
    "failed tasks": lambda lang: report(_run(state_type="COMPLETED", state_name="Completed"), TASKS * 2, LOGS, LINK,
                                        NOW, ReportPolicy(log_lines=50), lang),
    "waiting for approval": lambda lang: approval_waiting("idle-resources", OFFERS, 3600, LINK, lang),
    "waiting, no link": lambda lang: approval_waiting("query-watch", OFFERS[:1], 900, None, lang),
    "approval expired": lambda lang: approval_expired("idle-resources", 3600, lang),
    "action outcome": lambda lang: actions_applied("idle-resources", [
        {"action": "delete-volume", "resource": f"vol-{i}", "outcome": outcome, "detail": "deleted" if i else ""}
        for i, outcome in enumerate(["done", "failed", "skipped", "dry-run"] * 4)], lang),
    "silent deployment": lambda lang: silent_deployment("crm-export/nightly", "6h", ["111"], lang),
    "crashed": _crashed,
    "chat notes": lambda lang: ("[job] x", "\n".join([
        refused_earlier_note("", "HTTP 400: bad card", lang), store_down_note("sqlite:///ops.db", lang),
        truncated_note(12345, lang)])),
}


class Recorded:
    """A catalogue that remembers every text asked of it."""

    def __init__(self, inner) -> None:
        self.inner, self.asked = inner, []

    def gettext(self, message: str) -> str:
        self.asked.append(message)
        return self.inner.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        self.asked.append(singular)
        return self.inner.ngettext(singular, plural, n)


def _catalogue(language: str):
    with catalogue_path(language).open("rb") as f:
        return read_po(f, locale=language)


def _source_ids() -> set[str]:
    found = extract_from_dir(str(LOCALE_DIR.parent), method_map=[("**.py", "python")])
    return {m[2] if isinstance(m[2], str) else m[2][0] for m in found}


@pytest.mark.parametrize("kind", KINDS)
def test_every_message_kind_is_translated_and_fits_in_both_languages(kind, monkeypatch):
    recorders = {lang: Recorded(translations(lang)) for lang in LANGUAGES}
    for module in (rules.messages, rules.pipeline_failures):
        monkeypatch.setattr(module, "translations", recorders.__getitem__)
    rendered = {lang: KINDS[kind](lang) for lang in LANGUAGES}

    korean = {m.id if isinstance(m.id, str) else m.id[0]: m for m in _catalogue("ko") if m.id}
    asked = set(recorders["ko"].asked)
    assert asked, "the message uses no catalogue text"
    untranslated = [t for t in asked if t not in korean or not korean[t].string or korean[t].fuzzy]
    assert untranslated == []
    assert recorders["en"].asked == recorders["ko"].asked  # the same texts, in the same places

    en, ko = ("\n".join(rendered[lang]) for lang in LANGUAGES)
    assert en != ko and re.search("[가-힣]", ko)
    # No English sentence of ours is left in the Korean message: every word of the texts used
    # (placeholders and kept names aside) is absent unless the data itself carries it.
    ours = {w for t in asked for w in re.findall(r"[A-Za-z]{3,}", re.sub(r"\{\w+\}", "", t))} - KEPT
    leftover = set(re.findall(r"[A-Za-z]{3,}", ko)) & ours
    for module in (rules.messages, rules.pipeline_failures):
        monkeypatch.setattr(module, "translations", lambda lang: Marked())
    data_words = set(re.findall(r"[A-Za-z]{3,}", "\n".join(KINDS[kind]("ko"))))
    assert leftover <= data_words, sorted(leftover - data_words)

    for lang, (subject, body) in rendered.items():
        message = chat_message(body, subject, language=lang)
        assert _size(message) <= MAX_MESSAGE_BYTES, (lang, _size(message))


class Marked:
    """A catalogue that turns every text into a mark and its placeholders: what a message
    rendered with it still says in words came from the data."""

    def gettext(self, message: str) -> str:
        return "◆" + " ".join(re.findall(r"\{\w+\}", message))

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self.gettext(plural)


def test_the_catalogues_match_the_code():
    in_code = _source_ids()
    with (LOCALE_DIR / "messages.pot").open("rb") as f:
        template = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(f) if m.id}
    assert template == in_code, "run the extract command in rules/i18n.py"
    for lang in LANGUAGES[1:]:
        catalogue = {m.id if isinstance(m.id, str) else m.id[0]: m for m in _catalogue(lang) if m.id}
        assert set(catalogue) == in_code, "run the update command in rules/i18n.py"
        for text, entry in catalogue.items():
            strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
            assert all(strings) and not entry.fuzzy, f"{lang}: {text!r} is not translated"
            assert all(set(re.findall(r"\{\w+\}", s)) == set(re.findall(r"\{\w+\}", text)) for s in strings), text


def test_an_unknown_language_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="language 'de': use one of en, ko"):
        translations("de")


def test_a_korean_chat_block_gets_korean_messages_through_the_automation(chat):
    from prefect import flow

    from tests.conftest import route_to

    route_to(chat, language="ko")

    @flow(name="i18n-probe")
    def waiting() -> None:
        emit_job_message("i18n-probe", {lang: approval_expired("i18n-probe", 600, lang) for lang in LANGUAGES})

    waiting()
    [message] = chat.wait_for(1)
    assert "[i18n-probe] 승인 시간 만료" in message.text
    assert "10분 안에 승인한 사람이 없어 아무것도 변경하지 않았습니다." in message.text


def test_an_event_without_korean_text_falls_back_to_english(chat):
    """An event from an older version (no `i18n` field) still reaches a Korean space."""
    from prefect import flow
    from prefect.events import emit_event

    from tests.conftest import route_to

    route_to(chat, language="ko")

    @flow(name="i18n-old")
    def old() -> None:
        emit_event(event="dataplatform-ops.findings.changed",
                   resource={"prefect.resource.id": "dataplatform-ops.job.i18n-old"},
                   payload={"job": "i18n-old", "subject": "[i18n-old] 1 new", "text": "New (1): r1"})

    old()
    [message] = chat.wait_for(1)
    assert "[i18n-old] 1 new" in message.text and "New (1): r1" in message.text

