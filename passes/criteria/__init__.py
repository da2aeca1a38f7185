"""Built-in importance criteria (each registered under its name) and the least-squares refit."""
