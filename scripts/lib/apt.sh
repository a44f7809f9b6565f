# Sourced by the install scripts: installs a Debian package with apt when what a test needs
# is missing, as root or through sudo.
#   apt_install_if_missing <present-check> <package> <what to say without apt> [apt options]
# <present-check> is a shell test, e.g. 'command -v redis-server' or '[ -x /usr/bin/chromium ]'.
apt_install_if_missing() {
  local present=$1 package=$2 without_apt=$3
  shift 3
  if eval "$present" >/dev/null 2>&1; then
    echo "$package already installed"
    return 0
  fi
  command -v apt-get >/dev/null || { echo "$package is missing and there is no apt-get: $without_apt" >&2; return 1; }
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing Debian's $package ..."
  $sudo apt-get update -qq || return 1
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" "$package" >/dev/null || return 1
  echo "$package installed"
}
