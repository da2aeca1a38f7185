"""Built-in rewrite passes."""
