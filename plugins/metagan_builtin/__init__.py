"""metagan's built-in plugins.

Each subpackage is one plugin, declared in the root pyproject under the ``metagan`` entry-point
group and written against metagan's public API only, exactly as a third-party plugin would be.
"""
