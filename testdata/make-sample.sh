#!/usr/bin/env bash
# Makes testdata/sample.mp4: 6 seconds of a test pattern with a tone,
# H.264 + AAC, moov atom first (faststart) so players start before the end.
set -euo pipefail
out="${1:-$(dirname "$0")/sample.mp4}"
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=640x360:rate=25:duration=6" \
  -f lavfi -i "sine=frequency=440:sample_rate=44100:duration=6" \
  -c:v libx264 -profile:v main -pix_fmt yuv420p -preset veryfast -crf 30 -g 25 \
  -c:a aac -b:a 64k -shortest -movflags +faststart \
  -metadata title="edgetier sample" "$out"
