"""The README's commands install the Debian packages they need themselves
(scripts/install-system-deps.sh), and say what to do where they cannot."""

import os
import subprocess
from pathlib import Path

from keygate_testkit.paths import ROOT

SCRIPT = ROOT / "scripts/install-system-deps.sh"


def fake_machine(tmp_path: Path, installed: set[str], uid: int) -> dict[str, str]:
    """A PATH holding only grep, a dpkg-query that knows `installed`, and an `id` answering
    `uid`: no sudo, no apt-get."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "grep").symlink_to("/bin/grep")
    known = " ".join(sorted(installed))
    (bin_dir / "dpkg-query").write_text(
        "#!/bin/bash\n"
        f'for p in {known}; do [ "$p" = "${{@: -1}}" ] && {{ echo "install ok installed"; exit 0; }}; done\n'
        "exit 1\n")
    (bin_dir / "id").write_text(f"#!/bin/bash\necho {uid}\n")
    for name in ("dpkg-query", "id"):
        (bin_dir / name).chmod(0o755)
    return {"PATH": str(bin_dir), "HOME": str(tmp_path)}


def run_script(env: dict[str, str], *groups: str) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/bash", str(SCRIPT), *groups], env=env, capture_output=True,
                          text=True, timeout=30)


def test_without_root_or_sudo_it_names_the_packages_and_the_command(tmp_path):
    result = run_script(fake_machine(tmp_path, installed={"curl"}, uid=1000), "test")
    assert result.returncode == 1
    assert "docker-compose skopeo postgresql redis-server prometheus chromium" in result.stderr
    assert "apt-get install -y --no-install-recommends docker-compose" in result.stderr
    assert "curl" not in result.stderr.split("packages for test:")[1].splitlines()[0]


def test_nothing_to_do_needs_no_root(tmp_path):
    every = {"curl", "docker-compose", "skopeo", "postgresql", "redis-server", "prometheus", "chromium", "binutils", "g++"}
    result = run_script(fake_machine(tmp_path, installed=every, uid=1000), "test")
    assert result.returncode == 0, result.stderr
    assert "system packages present" in result.stdout


def test_an_unknown_group_is_refused(tmp_path):
    result = run_script(fake_machine(tmp_path, installed=set(), uid=0), "tset")
    assert result.returncode != 0
    assert "unknown group 'tset'" in result.stderr


def test_the_readme_commands_install_their_own_packages():
    makefile = (ROOT / "Makefile").read_text()
    recipes = {"test-system-deps": "install-system-deps.sh test",
               "run": "install-system-deps.sh run", "run-ha": "install-system-deps.sh run-ha"}
    for target, call in recipes.items():
        recipe = makefile.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
        assert call in recipe, f"make {target} does not call {call}"
    test_rule = next(line for line in makefile.splitlines() if line.startswith("test:"))
    assert test_rule.split(":", 1)[1].split()[0] == "test-system-deps", test_rule
    ci_commands = [line for line in (ROOT / ".ci/run").read_text().splitlines()
                   if line.strip() and not line.lstrip().startswith("#")]
    assert not any("install-system-deps" in line for line in ci_commands), \
        "CI must install nothing make test does not install itself"
    assert os.access(SCRIPT, os.X_OK)
