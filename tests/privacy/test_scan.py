"""The scanner's matching, without a stack: what it must find and what it must not."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from tests.privacy.scan import Needles, _readable, findings_in, people_in_mail

NEEDLES = Needles.of(names=["Ayşe Müller", "سارة"], emails=["ayse.mueller@example.org"])


def test_names_and_addresses_are_found_raw_escaped_and_inside_json_kept_as_a_string() -> None:
    escaped = json.dumps({"event": "registered", "who": "Ay\u015fe M\u00fcller"})
    assert "\\u015f" in escaped  # as a JSON log line writes it
    nested = json.dumps({"snapshot": json.dumps({"name": "سارة"})})
    header = b"AYSE.MUELLER@EXAMPLE.ORG"

    assert [f.found for f in findings_in("log", escaped, NEEDLES)] == ["Ayşe Müller"]
    assert [f.found for f in findings_in("doc", nested, NEEDLES)] == ["سارة"]
    assert [f.found for f in findings_in("header", header, NEEDLES)] == ["AYSE.MUELLER@EXAMPLE.ORG"]


def test_any_other_address_is_a_finding_but_the_platform_sender_and_ids_are_not() -> None:
    text = (
        '{"from": "noreply@weltoffene-kommune.example", "registration_id": '
        '"e804ec16-12b4-468c-ac9c-542870a47f76", "to": "someone.else@example.net", '
        '"token": "' + "x" * 50_000 + '"}'
    )
    assert [f.found for f in findings_in("message", text, NEEDLES)] == ["someone.else@example.net"]
    assert findings_in("message", text, NEEDLES, any_email=False) == []


def test_compressed_binary_values_are_read_as_text() -> None:
    packed = zlib.compress(json.dumps([{"fields": {"name": "Ayşe Müller"}}]).encode())
    document = _readable({"_id": "chunk", "facts": packed, "noise": b"\xca@W.6\xd7"})

    findings = findings_in("mongodb", json.dumps(document, ensure_ascii=False), NEEDLES)

    assert [f.found for f in findings] == ["Ayşe Müller"]


def test_people_are_read_from_the_to_header_and_the_message_id(tmp_path: Path) -> None:
    (tmp_path / "1.eml").write_bytes(
        b"To: =?utf-8?q?Ay=C5=9Fe_M=C3=BCller?= <Ayse.Mueller@example.org>\r\n"
        b"Message-ID: <confirmation.e804ec16-12b4-468c-ac9c-542870a47f76@wok>\r\n"
        b"Subject: x\r\n\r\nbody\r\n"
    )

    people = people_in_mail(tmp_path)

    person = people["ayse.mueller@example.org"]
    assert person.names == {"Ayşe Müller"}
    assert person.registrations == {"e804ec16-12b4-468c-ac9c-542870a47f76": {"confirmation"}}
