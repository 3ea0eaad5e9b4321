"""Options, their ini twins and parsers, and the validated settings."""
