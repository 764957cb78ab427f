"""An nginx configuration for several gateway replicas behind one address
(`python -m proxy nginx-config`): what docs/operations.md's "Several machines" shows and what the
replica end-to-end test runs, so the two cannot drift.

The retry policy is the point of this file. nginx passes a request to the next replica on
`error` or `timeout` only while nothing has been sent that a replica could have acted on:

- a GET (a poll, credits) is retried on another replica after a connection error, a
  timeout or a broken answer: polls are answered from the shared store, so any replica
  answers the same;
- a POST (a submit, which may start a paid run) is retried only when the connection to a
  replica could not be made (refused, or the connect timed out): nginx never passes a
  non-idempotent request on once it was sent (`non_idempotent` is left out on purpose).
  A replica that took a submit and then died leaves the client a 503 with `Retry-After`,
  never a second paid run; the client's `Idempotency-Key` makes its own retry safe.

nginx passes on the client's `Host` (the console's same-origin check compares it with the
browser's `Origin`), and `X-Forwarded-For` and `X-Forwarded-Proto`, which the replicas
believe only from the addresses in their `forwarded_allow_ips`.

When no replica can take a request (all down, or the one that had a submit broke off),
nginx answers `503 {"error": ...}` with `Retry-After: 1`, in the gateway's error shape.
A replica's own answers, 502 and 503 included, pass through untouched.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from string import Template

__all__ = ["DEFAULT_ACCESS_LOG", "RETRY_AFTER", "UNAVAILABLE", "render"]

# The gateway's error shape: `{"error": "<what and what to do>"}`.
UNAVAILABLE = json.dumps(
    {
        "error": "no gateway replica could take this request just now; "
        "try again after Retry-After seconds"
    }
)
RETRY_AFTER = 1  # seconds: a replica restarts, or nginx tries it again, in about that long
DEFAULT_ACCESS_LOG = "/var/log/nginx/segmind-gateway.access.log"
# A replica that failed is left out this long, then tried again: short, so a restarted
# replica takes requests again within a second or two of listening.
FAIL_TIMEOUT = "2s"

TEMPLATE = Template("""\
# Segmind gateway replicas behind nginx: `python -m proxy nginx-config` wrote this.
# Run it alone (`nginx -c THIS_FILE`) or take the http block into your own nginx.conf.
events {
    worker_connections 4096;
}

http {
    # The upstream events endpoint's last path part is a secret (any spelling of the
    # path, %2F and %2E included): the log shows `<secret>` in its place.
    map $$request_uri $$logged_uri {
        "~*^(?<p>.*?upstream(/|%2f)+((\\.|%2e){1,2}(/|%2f)+)*events(/|%2f)+)" "$${p}<secret>";
        default $$request_uri;
    }
    # $$upstream_addr names the replica(s) that served each request, in order of tries.
    log_format gateway '$$remote_addr [$$time_local] '
                       '"$$request_method $$logged_uri $$server_protocol" $$status '
                       'upstream=$$upstream_addr upstream_status=$$upstream_status '
                       '$$request_time';
    access_log $access_log gateway;

    upstream segmind_gateway {
$servers
    }

    server {
        listen $listen;

        location / {
            proxy_pass http://segmind_gateway;
            # The address the browser or client used (port included): without it a replica
            # sees `Host: segmind_gateway`, and the console refuses every form as foreign.
            proxy_set_header Host $$http_host;
            # Believed by the replicas from this nginx only: start them with
            # PROXY_FORWARDED_ALLOW_IPS naming its address (the client is then the one
            # nginx saw, whatever X-Forwarded-For the client sent itself).
            proxy_set_header X-Forwarded-For $$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $$scheme;
            # A submit can take the upstream's timeout (30 s) to answer.
            proxy_read_timeout 60s;
            proxy_connect_timeout 2s;
            # Another replica on a connection error or timeout. Without `non_idempotent`
            # a POST goes on only if it was never sent: a submit is never made twice.
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries $tries;
            proxy_next_upstream_timeout 10s;
            # Only nginx's own errors (the replicas' answers pass through as they are).
            error_page 502 504 = @unavailable;
        }

        location @unavailable {
            default_type application/json;
            add_header Retry-After $retry_after always;
            return 503 '$unavailable';
        }
    }
}
""")


def render(listen: str, replicas: Sequence[str], access_log: str = DEFAULT_ACCESS_LOG) -> str:
    """The configuration: nginx on `listen` (`PORT` or `HOST:PORT`) in front of `replicas`
    (`HOST:PORT` each), logging to `access_log`."""
    if not replicas:
        raise ValueError("name at least one replica (HOST:PORT) to balance over")
    for address in (listen, *replicas):
        if not address or any(c.isspace() or c in ";{}'\"" for c in address):
            raise ValueError(f"not an address for nginx: {address!r}")
    servers = "\n".join(
        f"        server {r} max_fails=1 fail_timeout={FAIL_TIMEOUT};" for r in replicas
    )
    return TEMPLATE.substitute(
        listen=listen,
        servers=servers,
        tries=len(replicas),
        access_log=access_log,
        retry_after=RETRY_AFTER,
        unavailable=UNAVAILABLE,
    )
