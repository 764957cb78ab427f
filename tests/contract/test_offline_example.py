"""Test your code offline with our cassettes: the example to copy.

It replays `cassettes/success.yaml`, a whole recorded job (submit, QUEUED, PROCESSING,
COMPLETED), in record mode `none`: nothing goes to the network, and a request the cassette
does not hold raises `CannotOverwriteExistingCassetteException` instead.
Needs vcrpy (`pip install vcrpy`) and this repository's `client` package.
"""

from client import Client
from client.cassettes import cassette_path, make_vcr


def test_a_whole_job_replays_offline() -> None:
    # Vendored the YAML files? cassette_path("success", directory="tests/cassettes").
    with (
        make_vcr().use_cassette(cassette_path("success")),
        Client(api_key="any", base_url="https://api.segmind.com") as client,
    ):
        # A submit replays only with the inputs it was recorded with (here: all defaults;
        # `{}` and the spelled-out defaults match alike). Replayed answers come at once,
        # so poll without the real 7 s pause.
        result = client.run({}, poll_interval=0.01)

    assert sorted(result.videos) == [1, 2, 3, 4]
    assert all(url.endswith(".mp4") for url in result.videos.values())
