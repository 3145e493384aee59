from cache.cli import main

raise SystemExit(main())
