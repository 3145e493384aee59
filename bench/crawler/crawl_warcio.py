"""`python -m bench.crawler.crawl_warcio ARGS...`: `crawl ARGS...` with the WARC writer's record
encoder swapped for warcio's (bench.crawler.warc_costs.WarcioRecords), to compare the two backends
on the crawler's own path. Everything else is crawler.cli.main unchanged."""

from __future__ import annotations

import sys

from bench.crawler.warc_costs import WarcioRecords
from crawler.cli import main
from crawler.warc import WarcWriter

WarcWriter.records_class = WarcioRecords

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
