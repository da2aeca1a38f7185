"""Built-in verification passes."""
