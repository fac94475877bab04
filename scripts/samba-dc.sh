#!/usr/bin/env bash
# Samba AD domain controller for the LDAP connector tests, bound to loopback only.
#
#   scripts/samba-dc.sh install        install the Debian packages (idempotent; needs root)
#   scripts/samba-dc.sh provision DIR  provision a stopped DC into DIR (cached template, ~7 s once)
#   scripts/samba-dc.sh start DIR      start the DC of DIR in the background, wait until LDAP answers
#   scripts/samba-dc.sh stop DIR       stop the DC of DIR
#
# docs/testing.md §3 says how the tests use it (measured with Samba 4.17, Debian bookworm).
set -euo pipefail

REALM=EXAMPLE.TEST
DOMAIN=EXAMPLE
HOST=dc1
ADMINPASS=${SAMBA_ADMINPASS:-'Passw0rd!Admin'}
LDAP_PORT=389  # Samba has no option to move LDAP off 389/636 (no "ldap port" in smb.conf)
# Bump when provisioning changes so cached templates are rebuilt.
TEMPLATE_VERSION=3
TEMPLATE_CACHE=${SAMBA_TEMPLATE_CACHE:-/tmp/roster-samba-template-v${TEMPLATE_VERSION}}
PACKAGES=(samba samba-ad-dc samba-ad-provision krb5-user winbind ldb-tools ldap-utils openssl)

die() { echo "samba-dc.sh: $*" >&2; exit 1; }

cmd_install() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "samba-dc.sh: packages already installed"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || die "install needs root (missing: ${missing[*]})"
  # krb5-config (pulled in by krb5-user) asks for a realm and servers: answer before installing.
  debconf-set-selections <<DEBCONF
krb5-config krb5-config/default_realm string ${REALM}
krb5-config krb5-config/kerberos_servers string ${HOST}.${REALM,,}
krb5-config krb5-config/admin_server string ${HOST}.${REALM,,}
krb5-config krb5-config/add_servers_realm string ${REALM}
krb5-config krb5-config/add_servers boolean false
krb5-config krb5-config/read_conf boolean true
DEBCONF
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit 2>/dev/null)" ]; then
    apt-get update
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y \
    --no-install-recommends "${missing[@]}"
  # Debian starts nothing in a container, but make sure no packaged daemon holds 389/636.
  for svc in samba-ad-dc smbd nmbd winbind; do
    command -v service >/dev/null && service "$svc" stop >/dev/null 2>&1 || true
  done
}

# Test CA plus a DC certificate whose SAN names the FQDN and localhost, never an IP address, so
# that connecting by IP exercises the host-name mismatch path.
make_certs() {
  local tls=$1
  mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Roster Test CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=${HOST}.${REALM,,}" \
    -keyout "$tls/key.pem" -out "$tls/dc.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s,DNS:localhost\nextendedKeyUsage=serverAuth\n' \
    "${HOST}.${REALM,,}" > "$tls/ext.cnf"
  openssl x509 -req -in "$tls/dc.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 3650 -extfile "$tls/ext.cnf" -out "$tls/cert.pem" 2>/dev/null
  chmod 600 "$tls/key.pem" "$tls/ca.key"
  rm -f "$tls/dc.csr" "$tls/ext.cnf"
}

build_template() {
  local dir=$1
  command -v samba-tool >/dev/null || die "samba-tool not found: run '$0 install' first"
  rm -rf "$dir"
  mkdir -p "$dir"
  # provision writes the realm's krb5.conf into the target dir; /etc/krb5.conf is not touched.
  samba-tool domain provision --targetdir="$dir" --realm="$REALM" --domain="$DOMAIN" \
    --server-role=dc --dns-backend=SAMBA_INTERNAL --adminpass="$ADMINPASS" --use-rfc2307 \
    --host-name="$HOST" --option="interfaces=lo" --option="bind interfaces only=yes" >/dev/null
  make_certs "$dir/tls"
}

# smb.conf holds absolute paths; rewrite them for the directory the template was copied to.
rewrite_conf() {
  local from=$1 dir=$2 conf=$2/etc/smb.conf
  sed -i "s#${from}\(/\|\$\)#${dir}\1#g" "$conf"
  sed -i '/^\s*dns forwarder/d;/^\s*server services/d;/^\s*log file/d;/^\s*pid directory/d;
          /^\s*ncalrpc dir/d;/^\s*winbindd socket directory/d;/^\s*ntp signd socket directory/d;
          /^\s*ldb:nosync/d;/^\s*ldap server require strong auth/d;/^\s*tls /d;/^\s*ldap port/d;
          /^\s*ldaps port/d' "$conf"
  mkdir -p "$dir/run" "$dir/log"
  sed -i "/^\[global\]/a\\
\tserver services = ldap, cldap, kdc, drepl, kcc\\
\tldb:nosync = true\\
\tldap server require strong auth = no\\
\tlog file = ${dir}/log/samba.log\\
\tpid directory = ${dir}/run\\
\tncalrpc dir = ${dir}/run/ncalrpc\\
\twinbindd socket directory = ${dir}/run/winbindd\\
\tntp signd socket directory = ${dir}/run/ntp_signd\\
\ttls enabled = yes\\
\ttls keyfile = ${dir}/tls/key.pem\\
\ttls certfile = ${dir}/tls/cert.pem\\
\ttls cafile = ${dir}/tls/ca.pem" "$conf"
}

cmd_provision() {
  local dir=${1:?usage: provision DIR}
  if [ ! -f "$TEMPLATE_CACHE/etc/smb.conf" ]; then
    local tmp=$TEMPLATE_CACHE.tmp.$$
    build_template "$tmp"
    rm -rf "$TEMPLATE_CACHE"
    mv "$tmp" "$TEMPLATE_CACHE"
    rewrite_conf "$tmp" "$TEMPLATE_CACHE"
  fi
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  cp -a "$TEMPLATE_CACHE" "$dir"
  dir=$(cd "$dir" && pwd)
  rewrite_conf "$TEMPLATE_CACHE" "$dir"
  echo "$dir"
}

cmd_start() {
  local dir=${1:?usage: start DIR}
  [ -f "$dir/etc/smb.conf" ] || die "$dir is not provisioned"
  if (exec 3<>/dev/tcp/127.0.0.1/${LDAP_PORT}) 2>/dev/null; then
    die "something already listens on 127.0.0.1:${LDAP_PORT} (another DC?); stop it first"
  fi
  setsid samba -F -s "$dir/etc/smb.conf" >"$dir/log/stdout.log" 2>&1 < /dev/null &
  echo $! > "$dir/run/roster-samba.pid"
  for _ in $(seq 1 100); do
    if ldapsearch -x -H "ldap://127.0.0.1:${LDAP_PORT}" -s base -b "" namingContexts \
        >/dev/null 2>&1; then
      echo "samba-dc.sh: DC up (pid $(cat "$dir/run/roster-samba.pid"))"
      return 0
    fi
    kill -0 "$(cat "$dir/run/roster-samba.pid")" 2>/dev/null || {
      tail -n 30 "$dir/log/stdout.log" "$dir/log/samba.log" >&2 || true
      die "samba exited during start"
    }
    sleep 0.1
  done
  die "DC did not answer on ldap://127.0.0.1:${LDAP_PORT} within 10 s"
}

cmd_stop() {
  local dir=${1:?usage: stop DIR} pidfile=$1/run/roster-samba.pid
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

case ${1:-} in
  install) cmd_install ;;
  provision) shift; cmd_provision "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *) die "usage: $0 install | provision DIR | start DIR | stop DIR" ;;
esac
