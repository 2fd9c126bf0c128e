"""Dashboard screens: set-up, live run, track detail, A/B, help."""
