"""Built-in importance criteria (each registered under its name)."""
