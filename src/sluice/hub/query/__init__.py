"""Querying the hub as SLS is queried (#21): SPL on PullLogs (``spl``), SLS search syntax (``search``),
SQL after ``|`` on an embedded engine (``sql``), index configuration (``index``) and the background indexer
(``indexer``). The parsing and evaluation modules are pure (no HTTP, no store); handlers wire them in."""
