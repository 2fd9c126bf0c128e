"""mirdeck's parent process: run engine, dashboard, headless printer and CLI.

Never imports torch, tensorflow, essentia or transformers: those live in the workers.
"""
__version__ = "0.1.0"
