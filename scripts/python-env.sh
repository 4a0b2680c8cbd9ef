#!/usr/bin/env bash
# Prints the path of a Python interpreter with the official `openai` and `ollama` packages
# and `selenium`, creating a virtual environment under ~/.cache/rbee/venv (outside the
# repository) the first time. The queen's OpenAI- and Ollama-compatibility tests drive rbee
# with the first two; its dashboard test drives Chromium with selenium.
set -euo pipefail
venv="${RBEE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/rbee/venv}"
if ! "$venv/bin/python" -c 'import openai, ollama, selenium' 2>/dev/null; then
    python3 -m venv "$venv" >&2 || {
        echo "python3 -m venv failed: install python3-venv (apt-get install python3-venv)" >&2
        exit 1
    }
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'openai>=1.40,<3' 'ollama>=0.4,<1' 'selenium>=4.20,<5' >&2
fi
echo "$venv/bin/python"
