"""Small stdlib-only helpers used by every layer, the shim included."""
