"""Regenerate the tiny placeholder videos served by the fake video-generation server.

Writes ``scene_1.mp4`` ... ``scene_4.mp4`` next to this file: 2 s, 320x180, 10 fps,
H.264 (yuv420p, faststart), each a solid background colour with a large "Scene N"
title and that scene's default prompt underneath.

The committed files were produced with::

    pip install imageio-ffmpeg && python fakeserver/assets/make_assets.py

using the ffmpeg binary bundled with imageio-ffmpeg (needs the ``drawtext`` filter)
and the DejaVu Sans Bold font (Debian package ``fonts-dejavu-core``).
Not imported by anything; run it by hand.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")

# (scene number, background colour, default prompt)
SCENES: tuple[tuple[int, str, str], ...] = (
    (1, "0x1f3a5f", "lighthouse rocks, gale"),
    (2, "0x6a1b4d", "colored smoke"),
    (3, "0x1e5e3a", "waterfall mist"),
    (4, "0x7a4a12", "chain-link fence"),
)


def _escape(text: str) -> str:
    """Escape a value for use inside a single-quoted drawtext option."""
    return text.replace("\\", "\\\\").replace("'", "'\\''").replace(":", "\\:")


def ffmpeg_args(ffmpeg: str, number: int, colour: str, prompt: str, out: Path) -> list[str]:
    """Build the ffmpeg command line for one scene."""
    font = _escape(str(FONT))
    title = (
        f"drawtext=fontfile='{font}':text='{_escape(f'Scene {number}')}'"
        ":fontsize=44:fontcolor=white:x=(w-text_w)/2:y=(h/2)-text_h-6"
    )
    subtitle = (
        f"drawtext=fontfile='{font}':text='{_escape(prompt)}'"
        ":fontsize=18:fontcolor=0xeeeeee:x=(w-text_w)/2:y=(h/2)+14"
    )
    return [
        ffmpeg,
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"color=c={colour}:s=320x180:r=10:d=2",
        "-vf",
        f"{title},{subtitle}",
        "-c:v",
        "libx264",
        "-profile:v",
        "baseline",
        "-preset",
        "veryslow",
        "-tune",
        "stillimage",
        "-crf",
        "30",
        "-pix_fmt",
        "yuv420p",
        "-an",
        "-map_metadata",
        "-1",
        "-fflags",
        "+bitexact",
        "-movflags",
        "+faststart",
        str(out),
    ]


def main() -> int:
    try:
        import imageio_ffmpeg  # type: ignore[import-not-found]
    except ImportError:
        print(
            "imageio-ffmpeg is not installed: pip install imageio-ffmpeg",
            file=sys.stderr,
        )
        return 1
    if not FONT.is_file():
        print(f"font not found: {FONT} (apt-get install fonts-dejavu-core)", file=sys.stderr)
        return 1
    ffmpeg: str = imageio_ffmpeg.get_ffmpeg_exe()
    for number, colour, prompt in SCENES:
        out = ASSETS_DIR / f"scene_{number}.mp4"
        subprocess.run(ffmpeg_args(ffmpeg, number, colour, prompt, out), check=True)  # noqa: S603
        print(f"{out.name}: {out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
