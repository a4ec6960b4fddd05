#!/usr/bin/env bash
# Vendor Swagger UI's prebuilt assets from the npm package swagger-ui-dist into
# serving/http/static/swagger-ui/, so /docs never loads anything from a CDN at run time.
#
#   bin/vendor-swagger-ui.sh 5.35.0
#
# Copies only what /docs uses (the bundle, its CSS, favicons) with the package's licence
# files and package.json, and records their SHA-256 sums; tests/http/test_docs.py checks the
# files against those sums and the version against serving/http/docs.py's SWAGGER_UI_VERSION.
# `npm pack` downloads the tarball without running the package's install scripts.
set -euo pipefail
cd "$(dirname "$0")/.."

version=${1:?usage: bin/vendor-swagger-ui.sh VERSION}
target=serving/http/static/swagger-ui
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "swagger-ui-dist@$version" >/dev/null && tar -xzf swagger-ui-dist-*.tgz)
rm -rf "$target"
mkdir -p "$target"
for file in swagger-ui-bundle.js swagger-ui-bundle.js.LICENSE.txt swagger-ui.css \
    favicon-16x16.png favicon-32x32.png LICENSE NOTICE package.json; do
    cp "$work/package/$file" "$target/$file"
done
# The bundle names a source map that is not vendored; drop the reference so browsers'
# developer tools do not ask /docs for it.
sed -i '/^\/\/# sourceMappingURL=/d' "$target/swagger-ui-bundle.js"
(cd "$target" && sha256sum -- * | grep -v ' SHA256SUMS$' > SHA256SUMS)
echo "vendored swagger-ui-dist $version into $target; set SWAGGER_UI_VERSION in serving/http/docs.py"
