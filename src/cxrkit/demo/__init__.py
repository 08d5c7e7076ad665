"""The offline demo: runs every capability on bundled sample data and writes ``index.html``."""
