"""tinyasc."""
