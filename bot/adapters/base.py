"""Kept while the Discord adapter moves to its package: Surface is in bot/surface.py."""

from bot.surface import Surface as Surface
