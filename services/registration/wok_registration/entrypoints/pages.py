"""The small German pages behind the links in the e-mails (cancel, erase).

A GET only shows what the button will do; the change happens on POST, so a mail
program or a link scanner that fetches the link changes nothing.
"""

from __future__ import annotations

from html import escape

from wok_registration import domain

_PAGE = """<!doctype html>
<html lang="de"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto; padding: 0 1em">
<h1>{title}</h1>
{body}
</body></html>
"""


def page(title: str, body: str) -> str:
    return _PAGE.format(title=escape(title), body=body)


def _event_line(event: domain.DialogueEvent) -> str:
    return (
        f"<p><strong>{escape(event.title)}</strong><br>"
        f"{escape(domain.german_period(event.starts_at, event.ends_at))}</p>"
    )


def confirm_cancel(event: domain.DialogueEvent, action_url: str) -> str:
    return page(
        "Anmeldung stornieren",
        _event_line(event) + "<p>Möchten Sie Ihre Anmeldung für diese Veranstaltung stornieren? "
        "Ihr Platz geht an die erste Person auf der Warteliste.</p>"
        f'<form method="post" action="{escape(action_url)}">'
        '<button type="submit">Anmeldung stornieren</button></form>',
    )


def confirm_erasure(event: domain.DialogueEvent | None, action_url: str) -> str:
    return page(
        "Daten löschen",
        (_event_line(event) if event else "")
        + "<p>Möchten Sie, dass wir Ihren Namen, Ihre E-Mail-Adresse und alle Angaben zu "
        "Ihrer Anmeldung löschen? Eine bestehende Anmeldung wird dabei storniert.</p>"
        f'<form method="post" action="{escape(action_url)}">'
        '<button type="submit">Meine Daten löschen</button></form>',
    )


def cancelled(event: domain.DialogueEvent | None) -> str:
    return page(
        "Anmeldung storniert",
        (_event_line(event) if event else "") + "<p>Ihre Anmeldung ist storniert.</p>",
    )


def erased() -> str:
    return page(
        "Daten gelöscht",
        "<p>Ihre Daten sind gelöscht; alle Dienste der Plattform löschen ihre Kopien.</p>",
    )


def problem(title: str, message: str) -> str:
    return page(title, f"<p>{escape(message)}</p>")
