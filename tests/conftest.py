"""Fixtures shared by the test files.

``registry``: the component registry a test works with, built afresh per test module (no
process-global registry exists). A module that sets ``USES_TEST_PLUGINS = True`` gets the
installed plugins plus tests/plugins_for_tests.py (``HARNESS_PLUGINS`` is set while the module
runs, so that runs and their worker processes load it too); one that sets
``USES_SPEC_COMPONENTS = True`` gets the installed plugins plus tests/spec_components.py (in this
process only); any other module gets the installed plugins only.
"""
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
if str(HERE) not in sys.path:  # plugins_for_tests, importable by worker processes too
    sys.path.insert(0, str(HERE))

from plugins_for_tests import installed_registry, loaded_test_plugins  # noqa: E402


@pytest.fixture(scope="module")
def registry(request):
    if getattr(request.module, "USES_TEST_PLUGINS", False):
        with loaded_test_plugins() as reg:
            yield reg
    elif getattr(request.module, "USES_SPEC_COMPONENTS", False):
        from spec_components import spec_registry

        yield spec_registry()
    else:
        yield installed_registry()


@pytest.fixture
def rng():
    """A fresh generator with a fixed seed."""
    import numpy as np

    return np.random.default_rng(0)
