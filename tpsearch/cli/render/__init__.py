"""Everything that draws: Rich renderables and JSON for the commands, and the cluster map.

Nothing below `tpsearch.cli` imports from here; library code returns records and these
functions turn them into what a person or a script reads.
"""
