"""Template helpers for the pages: epoch-ms dates, level names and inline icons."""

from datetime import UTC, datetime

from django import template
from django.utils import timezone as django_timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince

from projects import permissions
from projects.models import Level

register = template.Library()

# Simple 24x24 stroke icons drawn for dxweb (no third-party icon set).
ICONS = {
    "bell": '<path d="M6 8a6 6 0 0 1 12 0c0 7 3 9 3 9H3s3-2 3-9"/><path d="M10.3 21a1.94 1.94 0 0 0 3.4 0"/>',
    "folder": '<path d="M3 6.5A1.5 1.5 0 0 1 4.5 5h4.2l2 2h8.8A1.5 1.5 0 0 1 21 8.5v9a1.5 1.5 0 0 1-1.5 1.5h-15A1.5 1.5 0 0 1 3 17.5z"/>',
    "folder-open": '<path d="M3 17.5V6.5A1.5 1.5 0 0 1 4.5 5h4.2l2 2h7.8A1.5 1.5 0 0 1 20 8.5V10"/><path d="M3 17.5 5.6 11h16.4l-2.6 6.5a1.5 1.5 0 0 1-1.4 1H4.4A1.4 1.4 0 0 1 3 17.5z"/>',
    "file": '<path d="M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8z"/><path d="M14 3v5h5"/>',
    "workflow": '<rect x="3" y="4" width="6" height="5" rx="1"/><rect x="15" y="4" width="6" height="5" rx="1"/><rect x="9" y="15" width="6" height="5" rx="1"/><path d="M6 9v2.5a1.5 1.5 0 0 0 1.5 1.5h9a1.5 1.5 0 0 0 1.5-1.5V9M12 13v2"/>',
    "applet": '<path d="m8 8-4 4 4 4"/><path d="m16 8 4 4-4 4"/><path d="m13.5 5-3 14"/>',
    "record": '<rect x="4" y="4" width="16" height="16" rx="2"/><path d="M8 9h8M8 13h8M8 17h5"/>',
    "upload": '<path d="M12 16V4"/><path d="m7 9 5-5 5 5"/><path d="M4 16v3a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2v-3"/>',
    "download": '<path d="M12 4v12"/><path d="m7 11 5 5 5-5"/><path d="M4 16v3a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2v-3"/>',
    "plus": '<path d="M12 5v14M5 12h14"/>',
    "trash": '<path d="M4 7h16"/><path d="M9 7V4h6v3"/><path d="M6 7l1 13h10l1-13"/>',
    "move": '<path d="M5 12h14"/><path d="m13 6 6 6-6 6"/>',
    "edit": '<path d="M4 20h4L19 9l-4-4L4 16z"/><path d="m13.5 6.5 4 4"/>',
    "users": '<circle cx="9" cy="8" r="3.5"/><path d="M2.5 20a6.5 6.5 0 0 1 13 0"/><path d="M16 4.6a3.5 3.5 0 0 1 0 6.8M18 14a6.5 6.5 0 0 1 3.5 6"/>',
    "key": '<circle cx="8" cy="15" r="4"/><path d="m11 12 9-9"/><path d="m17 6 3 3"/>',
    "terminal": '<rect x="3" y="4" width="18" height="16" rx="2"/><path d="m7 9 3 3-3 3M12 15h5"/>',
    "box": '<path d="m12 3 8.5 4.5v9L12 21l-8.5-4.5v-9z"/><path d="m3.5 7.5 8.5 4.5 8.5-4.5M12 12v9"/>',
    "copy": '<rect x="8" y="8" width="12" height="12" rx="2"/><path d="M16 8V6a2 2 0 0 0-2-2H6a2 2 0 0 0-2 2v8a2 2 0 0 0 2 2h2"/>',
    "x": '<path d="M6 6l12 12M18 6 6 18"/>',
    "chevron": '<path d="m9 6 6 6-6 6"/>',
    "logout": '<path d="M15 4h3a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2h-3"/><path d="M10 16l-4-4 4-4M6 12h10"/>',
    "play": '<circle cx="12" cy="12" r="9"/><path d="m10 8.5 5.5 3.5-5.5 3.5z"/>',
    "stop": '<rect x="6" y="6" width="12" height="12" rx="2"/>',
    "refresh": '<path d="M20 11a8 8 0 1 0-2.3 5.7"/><path d="M20 4v7h-7"/>',
    "search": '<circle cx="11" cy="11" r="7"/><path d="m20 20-4-4"/>',
    "shield": '<path d="M12 3 4.5 6v6c0 4.5 3.2 7.8 7.5 9 4.3-1.2 7.5-4.5 7.5-9V6z"/>',
}


@register.simple_tag
def icon(name, size=18):
    """Render one of dxweb's inline SVG icons."""
    return format_html(
        '<svg class="icon" width="{}" height="{}" viewBox="0 0 24 24" fill="none" stroke="currentColor" '
        'stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round" aria-hidden="true">{}</svg>',
        size,
        size,
        mark_safe(ICONS.get(name, ICONS["file"])),
    )


@register.filter
def from_ms(value):
    """Turn epoch milliseconds into an aware datetime."""
    if value in (None, ""):
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


@register.filter
def level_name(value):
    """Turn a level number into its name (VIEW...ADMINISTER)."""
    try:
        return Level(int(value)).label
    except (TypeError, ValueError):
        return str(value)


@register.filter
def ago(value):
    """Say how long ago a datetime (or epoch milliseconds) was: "just now", "3 hours ago"."""
    if isinstance(value, int):
        value = from_ms(value)
    if value is None:
        return ""
    if (django_timezone.now() - value).total_seconds() < 60:
        return "just now"
    return f"{timesince(value, depth=1)} ago"


@register.filter
def get_item(mapping, key):
    """`mapping[key]` in a template, or nothing when it is not there."""
    return mapping.get(key, ()) if hasattr(mapping, "get") else ()


@register.filter
def reaches(level, needed):
    """`{% if level|reaches:"CONTRIBUTE" %}`: whether a page may offer its viewer what `needed` allows
    (the decision is projects.permissions.reaches)."""
    return permissions.reaches(level or Level.NONE, Level[needed])
