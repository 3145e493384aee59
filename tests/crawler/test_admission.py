"""The admission rules without sockets: smallest depth wins, depth relaxation through kept links
and redirects, scope / private / trap refusals counted."""

from __future__ import annotations

from crawler.admission import Admission
from crawler.config import CrawlConfig
from crawler.records import CrawlSummary
from crawler.scope import Scope

SEED = "http://a.example/"


def _admission(**config) -> tuple[Admission, list]:
    moved: list = []
    adm = Admission(CrawlConfig(**config), Scope.from_seeds([SEED]), frozenset({"a.example"}),
                    CrawlSummary(), lambda *args: moved.append(args))
    adm.known[SEED] = 0
    return adm, moved


def test_a_page_found_at_a_smaller_depth_passes_it_to_its_kept_links_and_redirect() -> None:
    adm, moved = _admission(max_depth=2)
    out: list = []
    u = "http://a.example/"
    adm.page_links(u, 0, (u + "b1",), out)
    adm.page_links(u + "b1", 1, (u + "b2",), out)
    adm.page_links(u + "b2", 2, (u + "b3", u + "r"), out)  # cut by the limit, but kept
    assert u + "b3" not in adm.known
    adm.page_links(u + "other", 0, (u + "b2",), out)  # b2 found again, at depth 1
    assert adm.known[u + "b2"] == 1 and adm.known[u + "b3"] == 2 and adm.known[u + "r"] == 2
    assert moved[0][:2] == (u + "b2", 1)
    err, new = adm.redirect(u + "r", u + "t", 2, out)
    assert err is None and new == 1 and adm.known[u + "t"] == 2
    adm.page_links(u + "x", 0, (u + "r",), out)  # the redirect found at depth 1: target too
    assert adm.known[u + "t"] == 1


def test_refusals_are_counted_and_redirect_hops_are_limited() -> None:
    adm, _ = _admission(max_redirects=1, max_path_segments=3)
    out: list = []
    assert adm.discover("http://elsewhere.example/", 1, SEED, out, 0) == 0
    assert adm.discover("http://a.example/1/2/3/4", 1, SEED, out, 0) == 0
    assert adm.discover(SEED, 1, SEED, out, 0) == 0
    s = adm.summary
    assert (s.out_of_scope, s.trap_guarded, s.duplicates_skipped) == (1, 1, 1)
    assert adm.redirect(SEED, SEED + "r1", 0, out) == (None, 1)
    err, new = adm.redirect(SEED + "r1", SEED + "r2", 0, out)
    assert new == 0 and "more than 1 redirects" in err


def test_hop_counts_rebuilt_on_resume_end_a_chain_at_the_limit() -> None:
    adm, _ = _admission(max_redirects=3)
    u = "http://a.example/"
    chain = [(u + "r0", u + "r1"), (u + "r1", u + "r2"), (u + "r2", u + "r3")]
    adm.restore_hops(chain + [(u + "x", u + "y"), (u + "y", u + "x")])  # a loop ends the walk
    assert [adm.hops[t] for _, t in chain] == [1, 2, 3]
    assert adm.hops[u + "y"] == 2 and adm.hops[u + "x"] == 2
    err, found = adm.redirect(u + "r3", u + "r4", 1, [])
    assert err is not None and "redirect" in err and found == 0
