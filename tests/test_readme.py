"""README's two commands are promises to a new user: CI must run exactly the test one."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if "pytest" in line and not line.lstrip().startswith("#")]
    assert len(ci_lines) == 1
    assert ci_lines[0].strip() in readme


def test_readme_shows_the_demo_command():
    assert "maillage demo" in (ROOT / "README.md").read_text()
