"""The package's version, in a module of its own so that any module can name it without
importing the package face (``metagan/__init__.py`` imports the API, which imports training)."""

__version__ = "0.1.0"
