"""Dashboard widgets: each renders part of a ``RunView``; none computes run state itself."""
