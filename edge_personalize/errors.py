from __future__ import annotations


class ConfigError(ValueError):
    """A configuration problem, named by file and key path: `personalize.toml: slots.hero.variants[1].when: ...`."""
