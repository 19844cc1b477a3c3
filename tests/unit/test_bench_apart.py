"""The servers run without the bench: `tidings up/api/chat/push` load no module of
tidings.bench but its argparse front, and none of the ``bench`` extra (hdrh)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

# In a fresh interpreter where the bench's modules and its extra cannot be imported, as in
# an install without tidings[bench]: parse each server command and import what its handler
# imports (cli.py: _up, _cluster_process, _push, _migrate).
SERVERS = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class NoBench(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "hdrh" or name.startswith(("hdrh.", "tidings.bench.")):
                raise ImportError(f"{name}: the bench's, not the servers'")
            return None

    sys.meta_path.insert(0, NoBench())
    from tidings.cli import build_parser

    parser = build_parser()
    for argv in (["up"], ["api"], ["chat"], ["push"], ["migrate"]):
        parser.parse_args(argv)
    import tidings.migrate, tidings.public_url, tidings.push.worker, tidings.runtime
    import tidings.runtime_cluster, tidings.server
    print(json.dumps(sorted(m for m in sys.modules if m.startswith(("tidings.bench", "hdrh")))))
    """
)


def test_the_server_commands_load_nothing_of_the_bench_but_its_arguments() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SERVERS], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == ["tidings.bench"]


def test_tidings_bench_without_its_extra_says_how_to_install_it() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["hdrh"] = None  # not installed
        from tidings.cli import main
        sys.exit(main(["bench", "relay"]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "pip install 'tidings[bench]'" in result.stderr
