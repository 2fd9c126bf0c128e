"""mirdeck run --cluster: the same run with its workers as Ray actors on the nodes of a Ray cluster.

The only package that imports ``ray`` (an optional extra); the engine imports it only when a run
is given ``--cluster``, so the local scheduler and ``mirdeck --help`` never load Ray.
"""
