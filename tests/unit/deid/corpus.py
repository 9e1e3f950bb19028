"""A small worklog-like test corpus: people of one tenant, and ~30 records mentioning
them in varied forms. ``NAMES`` and ``EMAILS`` must not survive de-identification."""

from __future__ import annotations

from typing import Any

# (full name, email, account id)
PEOPLE: list[tuple[str, str, str]] = [
    ("Ann Lee", "ann.lee@example.com", "acc-1001"),
    ("Bob Smith", "bob.smith@example.com", "acc-1002"),
    ("Priya Raman", "priya.raman@example.org", "acc-1003"),
    ("José Álvarez", "jose.alvarez@example.es", "acc-1004"),
    ("Mary-Jane O'Neil", "mj.oneil@example.co.uk", "acc-1005"),
    ("Chen Wei", "chen.wei@example.cn", "acc-1006"),
    ("Dr. Fatima Nkemelu", "f.nkemelu@example.ng", "acc-1007"),
    ("Lars van der Berg", "lars.vdberg@example.nl", "acc-1008"),
]

R: list[tuple[int, str, str]] = [
    # (author index, description, comment)
    (0, "Design review with Bob", "Bob Smith asked for changes; cc bob.smith@example.com"),
    (1, "Pairing on auth", "Paired with ann for an hour, then Ann Lee reviewed the PR"),
    (2, "Incident follow-up", "Mail from Ann.Lee@Example.COM about the outage, replied"),
    (3, "Data migration", "ann(at)example.com asked to run it again tomorrow"),
    (4, "Customer call", "Call with Priya and josé; Priya's notes in the doc"),
    (5, "Sprint planning", "Mary-Jane led; Mary Jane O'Neil owns the backlog now"),
    (6, "Code review", "Reviewed Chen's patch, ping @chenwei on chat"),
    (7, "Onboarding", "Welcomed Lars van der Berg, desk next to Fatima"),
    (0, "Budget", "LEE, ANN approved; forward to priya.raman [at] example [dot] org"),
    (1, "On-call handover", "Handed over to Nkemelu, phone +44 20 7946 0958"),
    (2, "Docs", "Dr Nkemelu and Dr. Fatima Nkemelu co-wrote the runbook"),
    (3, "Retro", "O'Neil raised the flaky tests; van der Berg agreed"),
    (4, "Interview", "Interviewed a candidate with Álvarez and Raman"),
    (5, "Release", "Release notes sent to jose.alvarez@example.es and mj.oneil@example.co.uk"),
    (6, "1:1", "1:1 with ANN LEE; next one with bob"),
    (7, "Support ticket", "Escalated by chen.wei at example dot cn, fixed"),
    (0, "Hiring", "Sent offer draft to lars.vdberg@example.nl for review"),
    (1, "Pairing", "Paired with Wei on the queue consumer"),
    (2, "Design", "Whiteboard session; Smith and Lee disagreed on naming"),
    (3, "Bug triage", "Triage with priya, mary-jane and lars"),
    (4, "Review", "Left comments for Chen Wei (acc-1006) on the exporter"),
    (5, "Planning", "Capacity: ann 3d, bob 2d, Fatima 4d"),
    (6, "Docs", "Mailto link: <mailto:f.nkemelu@example.ng>"),
    (7, "Admin", "Updated the rota; contact bob.smith @ example.com for swaps"),
    (0, "Meeting", "Weekly sync with José Álvarez and Mary-Jane O\u2019Neil"),
    (1, "Research", "Read the paper Priya Raman shared, call 415-555-0132-77 later"),
    (2, "Support", "Customer asked for F.Nkemelu@EXAMPLE.NG directly"),
    (3, "Ops", "Rotated keys; Lars and Ann verified the dashboards"),
    (4, "Refactor", "Split the module; Bob's review pending, @ann.lee approved"),
    (5, "Wrap-up", "Thanks Chen, Priya, Lars, Ann, Bob, José, Mary-Jane, Fatima!"),
]


def records() -> list[dict[str, Any]]:
    out = []
    for i, (author, description, comment) in enumerate(R):
        name, email, account = PEOPLE[author]
        out.append(
            {
                "author": name,
                "email": email,
                "account_id": account,
                "description": description,
                "comment": comment,
                "minutes": 15 + 5 * i,
                "day": f"2026-11-{1 + i % 28:02d}",
            }
        )
    return out


def _name_parts(name: str) -> set[str]:
    parts = {name}
    for token in name.replace("-", " ").split():
        token = token.strip(".")
        if token.casefold() not in {"dr"} and len(token) >= 2:
            parts.add(token)
    return parts


NAMES: set[str] = set().union(*(_name_parts(p[0]) for p in PEOPLE)) | {"O'Neil", "O\u2019Neil"}
EMAILS: set[str] = {p[1] for p in PEOPLE} | {
    "ann@example.com",
    "priya.raman [at] example [dot] org",
    "ann(at)example.com",
    "chen.wei at example dot cn",
    "bob.smith @ example.com",
}
ACCOUNTS: set[str] = {p[2] for p in PEOPLE}
