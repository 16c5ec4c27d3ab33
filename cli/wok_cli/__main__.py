"""`python -m wok_cli` is the `wok` command."""

from wok_cli.main import app

if __name__ == "__main__":
    app()
