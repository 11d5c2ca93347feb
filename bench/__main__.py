"""`python -m bench`: load Latch and the bare baseline, print and write bench/RESULTS.md."""

from __future__ import annotations

from bench.run import main

raise SystemExit(main())
