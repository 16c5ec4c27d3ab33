"""Signed report links: one municipality, until they expire, only with the deployment's key."""

from __future__ import annotations

from wok_runtime.report_links import report_link_problem, sign_report_link

AGS = "07312000"
NOW = 1_780_000_000.0


def test_a_link_opens_its_municipality_s_report_until_it_expires() -> None:
    link = sign_report_link(service_key="k", ags=AGS, now=NOW, valid_for_s=600)
    assert link.expires == int(NOW) + 600
    opens = {"service_key": "k", "ags": AGS, "expires": link.expires, "signature": link.signature}
    assert report_link_problem(**opens, now=NOW + 600) is None
    assert "expired" in (report_link_problem(**opens, now=NOW + 601) or "")
    assert "signature" in (report_link_problem(**{**opens, "ags": "07315000"}, now=NOW) or "")
    assert "signature" in (report_link_problem(**{**opens, "service_key": "x"}, now=NOW) or "")


def test_without_a_shared_service_key_no_link_opens_anything() -> None:
    link = sign_report_link(service_key="", ags=AGS, now=NOW, valid_for_s=600)
    problem = report_link_problem(
        service_key="", ags=AGS, expires=link.expires, signature=link.signature, now=NOW
    )
    assert problem is not None and "WOK_SERVICE_KEY" in problem
