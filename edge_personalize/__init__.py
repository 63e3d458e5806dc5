"""Personalize marked fragments of HTML from the visitor's anonymous context, and explain every choice."""

from edge_personalize.config import (
    BadgeSettings,
    Config,
    ConsentSettings,
    Limits,
    LocationSettings,
    OwnerSettings,
    Route,
    SiteSettings,
    Slot,
    Variant,
    load_config,
)
from edge_personalize.errors import ConfigError
from edge_personalize.middleware import PersonalizeMiddleware

__all__ = [
    "BadgeSettings",
    "Config",
    "ConfigError",
    "ConsentSettings",
    "Limits",
    "LocationSettings",
    "OwnerSettings",
    "PersonalizeMiddleware",
    "Route",
    "SiteSettings",
    "Slot",
    "Variant",
    "load_config",
]
