"""The configuration files: tumblerd's config and the reader of the article's format."""
