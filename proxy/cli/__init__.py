"""The command line, `python -m proxy` (console script `segmind-gateway`): `serve` (with
the embedded fake upstream when no Segmind key is set), `migrate`, `admin` (every admin
operation), `demo` and `nginx-config`.

May import every layer, the app factory (`proxy/app.py`) included; nothing of `proxy`
imports it but `proxy/__main__.py`. It parses arguments and prints; what an admin command
does is in `proxy/services/operations.py`, so the admin API and the console do the same.
"""
