"""The gateway (`proxy/`): Segmind's workflow API with team keys, exact quotas and budgets,
one paid run for identical requests, and signed webhooks.

Its folders are layers, lowest first; a module imports its own layer and those below,
never above (`tests/proxy/test_layout.py` holds it):

    core/       pure parts: settings, clocks, quotas, keys, signing, SSRF, the error tree
    db/         reads and writes: units of work, SQLite and PostgreSQL, migrations
    rules/      the rules, each a function of one unit of work
    store/      `Store`: the rules run on the backend the `db` setting picks
    services/   the running gateway: admission, upstream, poller, deliverer, operations
    edge/       HTTP: routes, admin API, bodies, auth, errors as answers
    console/    the operators' web pages
    app.py      the assembly: `create_app` configures the process and wires the layers
    cli/        `python -m proxy` (`__main__.py`): serve, admin, migrate, demo, nginx-config

docs/architecture.md draws the layers and follows a request through them.
"""
