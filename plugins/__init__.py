"""blitz's built-in plugins, one module each, registered through blitz's own entry points."""
