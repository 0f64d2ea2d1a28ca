"""The annotators' web app: listen, read, review themes, correct text, search (see `ohp serve`)."""

from .app import create_app

__all__ = ["create_app"]
