#!/usr/bin/env bash
# Fills third_party/ (git-ignored) with what a machine without Debian's -dev packages needs to build the
# engine and its tests: nlohmann/json's and Eigen's headers and GoogleTest's sources, copied from this
# machine's Debian packages nlohmann-json3-dev, libeigen3-dev and googletest (installed when missing). The
# lent GPU machine has none of them and reaches no registry (DESIGN §7): the device tool carries third_party/
# there with the working tree; cmake/ falls back to it when find_package finds none.
#   scripts/fetch_third_party.sh [DIR]      DIR defaults to third_party (the folder EBM_THIRD_PARTY names)
# Writes DIR/nlohmann/, DIR/eigen3/, DIR/googletest/, DIR/VERSIONS (the packages' versions); replaces those.
set -euo pipefail
case "${1:-}" in
  -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  -*) echo "fetch_third_party: unknown option $1 (usage: scripts/fetch_third_party.sh [DIR])" >&2; exit 2 ;;
esac
(($# <= 1)) || { echo "fetch_third_party: one DIR at most, got $# arguments" >&2; exit 2; }
dest=$(realpath -m "${1:-$(dirname "$0")/../third_party}")  # a relative DIR is from where you are
cd "$(dirname "$0")/.."

pkgs=(nlohmann-json3-dev libeigen3-dev googletest)
source scripts/lib/packages.sh
install_missing fetch_third_party "${pkgs[@]}" || true
for f in /usr/include/nlohmann/json.hpp /usr/include/eigen3/Eigen/Core /usr/src/googletest/CMakeLists.txt; do
  [[ -e $f ]] || { echo "fetch_third_party: $f missing although its package is installed" >&2; exit 1; }
done

mkdir -p "$dest"
rm -rf "$dest/nlohmann" "$dest/eigen3" "$dest/googletest"
cp -rL /usr/include/nlohmann "$dest/nlohmann"
cp -rL /usr/include/eigen3 "$dest/eigen3"
cp -rL /usr/src/googletest "$dest/googletest"
{
  for p in "${pkgs[@]}"; do echo "$p $(dpkg-query -W -f='${Version}' "$p")"; done
} > "$dest/VERSIONS"
sizes=()
for d in nlohmann eigen3 googletest; do sizes+=("$dest/$d ($(du -sh "$dest/$d" | cut -f1))"); done
echo "fetch_third_party: $(IFS=,; echo "${sizes[*]}" | sed 's/,/, /g'): $(paste -sd, "$dest/VERSIONS" | sed 's/,/, /g')"
