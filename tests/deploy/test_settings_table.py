"""The README's table of settings is the one the settings Structs make, and every `KEEL_*`
variable keel's code or scripts read is in the README."""

from __future__ import annotations

import re
from pathlib import Path

from deploy.settings import BEGIN, END, table

ROOT = Path(__file__).resolve().parents[2]
# Names that look like variables but are not: stream names, prefixes in f-strings, and the
# example in a docstring.
NOT_VARIABLES = {"KEEL_WORK", "KEEL_OUTCOMES", "KEEL_", "KEEL_REQUIRE_", "KEEL_X"}


def test_the_readme_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text()
    shown = readme.split(BEGIN, 1)[1].split(END, 1)[0]
    assert shown == table(), "run: python -m deploy.settings, and paste it into the README"


def test_every_variable_read_anywhere_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    packages = ("schemas", "session_store", "brain", "hands", "gateway", "deploy")
    sources = [path for package in packages for path in (ROOT / package).rglob("*.py")]
    sources += [*(ROOT / "deploy").rglob("*.sh"), ROOT / ".ci" / "run", ROOT / "Makefile"]
    sources += [ROOT / "tests" / name for name in ("sandboxes.py", "backends.py")]
    sources += [ROOT / "tests" / "session_store" / "test_processes.py"]
    found = {
        name for path in sources for name in re.findall(r"KEEL_[A-Z0-9_]+", path.read_text())
    } - NOT_VARIABLES
    assert len(found) > 40
    undocumented = sorted(name for name in found if f"`{name}`" not in readme)
    assert not undocumented, undocumented
