"""Test-only backends for the dashboard tests and benchmark (enable with
``MIRDECK_EXTRA_BACKENDS=tests.support.dashboard_backends.dash_slow,...``). Behaviour is chosen by the
track's folder name and the run's module options."""
