"""The fixture site's generator and truth, checked against independent code: every spelling of a
link normalizes to the target the generator meant, and the truth's robots matcher agrees with
protego on every path of every host."""

from __future__ import annotations

import re

import pytest
from protego import Protego

from crawler import normalize_url
from fixtures.site import build_site
from fixtures.site.model import PORT
from fixtures.site.truth import _allowed, _group_rules

HREF = re.compile(r'<a (?:rel="[^"]*" )?href="([^"]*)"')


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_link_spelling_normalizes_to_its_target(seed: int) -> None:
    site = build_site(hosts=6, pages_per_host=25, seed=seed, features="full")
    checked = 0
    for host in site.hosts:
        for path, page in host.pages.items():
            if (page.bytes_body is not None or "<base" in page.body or "html" not in page.content_type
                    or path == "/long/index.html"):  # its bait is longer than a URL may be
                continue
            base = f"http://{host.address}:8080{path}"
            hrefs = HREF.findall(page.body.replace(PORT, "8080"))
            found = {normalize_url(h, base) for h in hrefs}
            wanted = {t.url(8080) for t in (*page.follows, *page.baits)}
            assert found == wanted, (host.address, path)
            checked += len(hrefs)
    assert checked > 300


@pytest.mark.parametrize("agent", ["fanmill", "OtherBot/2.0", "somebody"])
def test_truth_robots_matcher_agrees_with_protego(agent: str) -> None:
    site = build_site(hosts=6, pages_per_host=10, seed=4, features="full")
    for host in site.hosts:
        if host.robots_status >= 300:
            continue  # 404/503/redirect outcomes are decided by status, not by rules
        parser = Protego.parse(host.robots_body)
        rules = _group_rules(host, agent)
        for path in host.pages:
            assert _allowed(rules, path) == parser.can_fetch(f"http://h{path}", agent), (
                host.address, path, agent)


def test_the_generator_is_deterministic_and_checks_its_arguments() -> None:
    a, b = build_site(6, 12, seed=9), build_site(6, 12, seed=9)
    assert [(h.address, sorted(h.pages)) for h in a.hosts] == [(h.address, sorted(h.pages))
                                                               for h in b.hosts]
    assert a.hosts[0].pages["/"].body == b.hosts[0].pages["/"].body
    with pytest.raises(ValueError):
        build_site(hosts=3, features="full")
    with pytest.raises(ValueError):
        build_site(features="fancy")
