#!/usr/bin/env bash
# The reference design as a shell-out baseline: for each layer, bottom to top, `tar -x` it into a
# scratch directory, apply its whiteouts to the destination, then stack it with `cp -a --reflink=auto`.
# Usage: baseline-stack.sh DEST SCRATCH LAYER_BLOB...   (blobs: tar, tar+gzip or tar+zstd)
set -euo pipefail
dest=$1 scratch=$2
shift 2
mkdir -p "$dest" "$scratch"
i=0
for blob in "$@"; do
  layer="$scratch/$i"
  mkdir -p "$layer"
  # GNU tar recognises gzip and zstd by their magic bytes.
  tar --same-owner --xattrs --xattrs-include='*' -xpf "$blob" -C "$layer"
  # Opaque directories: everything below them in the lower layers goes.
  while IFS= read -r -d '' marker; do
    dir=$(dirname "${marker#"$layer"/}")
    [ -d "$dest/$dir" ] && find "$dest/$dir" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
    rm -f "$marker"
  done < <(find "$layer" -name '.wh..wh..opq' -print0)
  # Whiteouts: the named lower entry goes.
  while IFS= read -r -d '' marker; do
    rel=${marker#"$layer"/}
    name=$(basename "$rel")
    rm -rf "$dest/$(dirname "$rel")/${name#.wh.}"
    rm -f "$marker"
  done < <(find "$layer" -name '.wh.*' -print0)
  cp -a --reflink=auto "$layer/." "$dest/"
  i=$((i + 1))
done
rm -rf "$scratch"
