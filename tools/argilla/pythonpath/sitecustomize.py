"""Start-up hook for the local argilla-server processes (put on PYTHONPATH by serve.py).

Installs the script-free search-engine updates; see ``argilla_scriptless``.
"""

from __future__ import annotations

import argilla_scriptless

argilla_scriptless.install()
