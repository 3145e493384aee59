"""`python -m crawler`: the `crawl` command."""

from crawler.cli import main

raise SystemExit(main())
