"""Test-only backends that misbehave on purpose, behind the real worker protocol.

Enable with ``MIRDECK_EXTRA_BACKENDS=tests.support.fake_backends.noop,...``. Behaviour is chosen by the
track's folder name, so one run can mix good and bad tracks.
"""
