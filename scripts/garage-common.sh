# Shared by garage.sh and garage-cluster.sh (sourced, not run): the pinned Garage version,
# installing it when missing, and picking free loopback ports.

GARAGE_VERSION=2.5.0

# Puts Garage on PATH, building it from crates.io the first time (~16 min on 2 cores).
ensure_garage() {
  if command -v garage >/dev/null 2>&1; then return; fi
  if [ -x "$HOME/.cargo/bin/garage" ]; then export PATH="$HOME/.cargo/bin:$PATH"; return; fi
  echo "$(basename "$0"): installing Garage $GARAGE_VERSION with cargo (first time only, ~16 min)..." >&2
  cargo install garage --locked --version "$GARAGE_VERSION" >&2
  export PATH="$HOME/.cargo/bin:$PATH"
}

# A TCP port on 127.0.0.1 that is free right now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
