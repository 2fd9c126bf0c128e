"""Runs that outlive the terminal: the run service and its clients. UI-free (import-linter).

- ``registry``: one run per dataset (a lock in ``DATASET/.mirdeck/``), and where to find it.
- ``server``: serves a running engine's event stream on a Unix socket in the run folder.
- ``replay``: what a late client is sent first, so it sees the whole run so far.
- ``client``: the same stream on the other side, with the engine's controls (stop, pause).
- ``daemon``: ``mirdeck run --detach``: the engine in a background process of its own.
"""
