# install_missing TAG PACKAGE...: installs, with apt, those of the Debian packages that are not installed
# (sudo when not root), saying which under TAG; returns 1 (after saying nothing) when all are present.
# Sourced by scripts/setup.sh and scripts/fetch_third_party.sh.
install_missing() {
  local tag=$1 p sudo=""
  shift
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  ((${#missing[@]})) || return 1
  echo "$tag: installing ${missing[*]}"
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
}
