"""`salon web` as a newcomer runs it (no browser needed)."""

from __future__ import annotations


def test_salon_web_local_serves_an_imported_corpus(tmp_path):
    """`salon web --local --port N` on a catalog imported from the corpus, as the README says."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.corpus import CORPUS

    config = tmp_path / "salon.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    run = [sys.executable, "-m", "cli.main", "--config", str(config)]
    subprocess.run([*run, "import", str(CORPUS)], check=True, capture_output=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [*run, "web", "--local", "--port", str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert "web gallery on http://127.0.0.1:" in server.stdout.readline()
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/?q=landscape") as response:
                    page = response.read().decode()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert "<p class=count>" in page and "Salon gallery" in page
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/") as response:
            assert "images · page 1 of" in response.read().decode()
    finally:
        server.terminate()
        server.wait(10)
