"""Built-in channel selection passes."""
