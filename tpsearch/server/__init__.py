"""Ways in for other programs: `tpsearch mcp` (Model Context Protocol, for AI agents and editors)
and `tpsearch serve` (a warm server that `tpsearch query` uses by itself).

Both serve one collection through `service.Service`, which calls the `Collection` API and keeps
the encoder loaded between calls; `mcp.py` and `warm.py` are the two transports, `client.py` is
the light side `tpsearch query` imports (no torch, no SQLite).
"""
