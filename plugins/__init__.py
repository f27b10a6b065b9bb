"""Built-in harness plugins, installed as the ``harness_plugins`` package.

Each module is one plugin registered through the ``harness`` entry-point group (see setup.cfg),
exactly like a third-party plugin.
"""
