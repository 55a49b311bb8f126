#!/usr/bin/env bash
# Vendors uPlot (https://github.com/leeoniya/uPlot, MIT), the chart library of the cluster
# dashboard, from the npm registry into stack/assets/vendor/uplot/: the minified IIFE build, its
# CSS and its licence. The page embeds them (no CDN at run time); re-run this to move to another
# pinned version, then commit the files.
#   scripts/vendor-uplot.sh [VERSION]    (default: the pinned one below)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VERSION=${1:-1.6.32}
# The registry's own integrity hash of that version's tarball, checked before anything is used.
INTEGRITY_1_6_32='sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw=='
out=stack/assets/vendor/uplot
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
command -v npm >/dev/null || { echo "error: npm not found (apt-get install npm)" >&2; exit 1; }
want=$(npm view "uplot@$VERSION" dist.integrity)
if [ "$VERSION" = 1.6.32 ] && [ "$want" != "$INTEGRITY_1_6_32" ]; then
    echo "error: the registry's integrity for uplot@$VERSION changed: $want" >&2
    exit 1
fi
(cd "$tmp" && npm pack -q "uplot@$VERSION" >/dev/null)
tgz="$tmp/uplot-$VERSION.tgz"
got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
[ "$got" = "$want" ] || { echo "error: uplot-$VERSION.tgz: integrity $got, registry says $want" >&2; exit 1; }
tar -xzf "$tgz" -C "$tmp"
mkdir -p "$out"
cp "$tmp/package/dist/uPlot.iife.min.js" "$tmp/package/dist/uPlot.min.css" "$out/"
cp "$tmp/package/LICENSE" "$out/LICENSE"
echo "$VERSION" >"$out/VERSION"
echo "vendored uplot $VERSION into $out ($(stat -c %s "$out/uPlot.iife.min.js") bytes of JS)"
