#!/usr/bin/env bash
# A volume served with nbdkit's own TLS (--tls=require): with a pre-shared
# key, with X.509 certificates, and with X.509 and --tls-verify-peer.  The
# right credentials write, flush and read back a pattern; a plaintext
# client, a wrong key, a client trusting another CA and a client without
# an accepted certificate are refused.  At the end a plain read-only
# nbdkit finds each volume's last pattern.
source ./functions.sh
set -e
set -x

requires_built
requires psktool --version
requires certtool --version
requires sh -c 'nbdkit --dump-config | grep -qx tls=yes'
requires "$PYTHON" -c 'import nbd; assert nbd.NBD().supports_tls()'

make_cluster_dir
start_cluster 2
for v in vol-psk vol-x509 vol-peer; do
    tessera volume create "$v" --size 1M --replicas 2
done

# ---- Credentials (all in $T, removed with the cluster directory) ----
T="$CLUSTER/tls"
mkdir -m 0700 "$T"

psktool -u alice -p "$T/keys.psk"
# The same user with another key, and a user the server does not know.
psktool -u alice -p "$T/wrong.psk"
psktool -u mallory -p "$T/mallory.psk"

# make_ca DIR CN: a self-signed CA in DIR (ca-key.pem, ca-cert.pem).
# ECDSA keys: generated at once, where RSA takes seconds.
make_ca ()
{
    mkdir -m 0700 "$1"
    certtool --generate-privkey --key-type=ecdsa \
             --outfile "$1/ca-key.pem" 2>/dev/null
    printf 'cn = %s\nca\ncert_signing_key\nexpiration_days = 2\n' \
           "$2" >"$1/ca.info"
    certtool --generate-self-signed --load-privkey "$1/ca-key.pem" \
             --template "$1/ca.info" --outfile "$1/ca-cert.pem" 2>/dev/null
}

# make_cert CADIR DIR ROLE: a key and a certificate signed by the CA in
# CADIR, as DIR/ROLE-key.pem and DIR/ROLE-cert.pem (ROLE: server, client).
make_cert ()
{
    local usage=tls_www_client
    [ "$3" = server ] && usage=tls_www_server
    certtool --generate-privkey --key-type=ecdsa \
             --outfile "$2/$3-key.pem" 2>/dev/null
    printf '%s\n' "organization = Tessera test" "cn = localhost" \
           "dns_name = localhost" "ip_address = 127.0.0.1" "$usage" \
           signing_key encryption_key "expiration_days = 2" >"$2/$3.info"
    certtool --generate-certificate --load-ca-certificate "$1/ca-cert.pem" \
             --load-ca-privkey "$1/ca-key.pem" --load-privkey "$2/$3-key.pem" \
             --template "$2/$3.info" --outfile "$2/$3-cert.pem" 2>/dev/null
}

make_ca "$T/ca" "Tessera test CA"
make_ca "$T/ca2" "Another CA"
# nbdkit --tls-certificates=DIR: ca-cert.pem, server-cert.pem,
# server-key.pem.  libnbd set_tls_certificates(DIR): ca-cert.pem and,
# to present one, client-cert.pem and client-key.pem.
for d in server client anon other-ca rogue; do mkdir -m 0700 "$T/$d"; done
cp "$T/ca/ca-cert.pem" "$T/server/"
make_cert "$T/ca" "$T/server" server
# Trusts the CA and has a client certificate from it.
cp "$T/ca/ca-cert.pem" "$T/client/"
make_cert "$T/ca" "$T/client" client
# Trusts the CA, has no client certificate.
cp "$T/ca/ca-cert.pem" "$T/anon/"
# Trusts only the other CA.
cp "$T/ca2/ca-cert.pem" "$T/other-ca/"
# Trusts the CA but its client certificate is from the other CA.
cp "$T/ca/ca-cert.pem" "$T/rogue/"
make_cert "$T/ca2" "$T/rogue" client

# ---- The client ----
cat >"$CLUSTER/tls-client.py" <<'PY'
# tls-client.py MODE TAG ADDRESS CREDS
#   MODE: write (write TAG's pattern, flush, read it back and compare) or
#         check (read and compare only)
#   ADDRESS: unix:PATH or tcp:HOST:PORT
#   CREDS: plain (no TLS at all), psk:USER:FILE or x509:DIR
# If the connection fails, prints "refused: " and libnbd's message and
# exits with 1.
import random
import sys
import nbd

mode, tag, addr, creds = sys.argv[1:5]
h = nbd.NBD()
if creds == "plain":
    h.set_tls(nbd.TLS_DISABLE)
elif creds.startswith("psk:"):
    _, user, path = creds.split(":", 2)
    h.set_tls(nbd.TLS_REQUIRE)
    h.set_tls_username(user)
    h.set_tls_psk_file(path)
elif creds.startswith("x509:"):
    h.set_tls(nbd.TLS_REQUIRE)
    h.set_tls_certificates(creds[5:])
else:
    sys.exit("bad CREDS: " + creds)
try:
    if addr.startswith("unix:"):
        h.connect_unix(addr[5:])
    else:
        host, port = addr[4:].rsplit(":", 1)
        h.connect_tcp(host, port)
except nbd.Error as ex:
    print("refused:", ex.string, file=sys.stderr)
    sys.exit(1)
assert h.get_tls_negotiated() == (creds != "plain")
assert h.get_size() == 1 << 20, h.get_size()

# Unaligned, across two 64K segment boundaries.
off = 65536 - 1000
data = random.Random(tag).randbytes(2 * 65536 + 333)
if mode == "write":
    h.pwrite(data, off)
    h.flush()
got = h.pread(len(data), off)
assert got == data, "%s: read back other data" % tag
h.shutdown()
print("%s %s %s: ok" % (mode, tag, addr))
PY

# The client, given at most 60 s (libnbd itself has no timeout).
client=(timeout 60 "$PYTHON" "$CLUSTER/tls-client.py")

# works TAG ADDRESS CREDS: the client gets in, writes TAG's pattern,
# flushes and reads it back.
works ()
{
    "${client[@]}" write "$@"
}

# check TAG ADDRESS CREDS: the client gets in and reads TAG's pattern.
check ()
{
    "${client[@]}" check "$@"
}

# refused REGEX ADDRESS CREDS: the client cannot connect, and libnbd's
# message matches REGEX.
refused ()
{
    expect_fail "refused: .*$1" "${client[@]}" write bad "$2" "$3"
}

# free_port: a loopback TCP port that was free a moment ago.
free_port ()
{
    "$PYTHON" -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# start_nbdkit_tcp NAME VOLUME [OPTIONS...]: start_nbdkit on a free
# loopback TCP port (set in PORT) instead of a unix socket: libnbd checks
# the server's certificate against its host name only over TCP.  Tries
# another port (at most 5 times) if someone took this one meanwhile.
start_nbdkit_tcp ()
{
    local name="$1" volume="$2" try
    shift 2
    for (( try = 0; try < 5; ++try )); do
        PORT="$(free_port)"
        rm -f "$CLUSTER/nbdkit-$name.pid"
        : >"$CLUSTER/nbdkit-$name.log"
        nbdkit -f -i 127.0.0.1 -p "$PORT" -P "$CLUSTER/nbdkit-$name.pid" \
               "$TESSERA_PLUGIN" mds="$TESSERA_MDS" volume="$volume" \
               timeout=2 "$@" >>"$CLUSTER/nbdkit-$name.log" 2>&1 &
        if wait_for_pidfile "$CLUSTER/nbdkit-$name.pid" $!; then
            return 0
        fi
        grep -q "Address already in use" "$CLUSTER/nbdkit-$name.log" ||
            return 1
    done
    return 1
}

# expect_server_error NAME REGEX: nbdkit NAME logs a line matching REGEX
# (waiting at most 10 s: it may log after the client has gone), and that
# line is consumed: the next call needs a new one.
declare -A _seen
expect_server_error ()
{
    local log="$CLUSTER/nbdkit-$1.log" key="$1 $2" i n
    for (( i = 0; i < 100; ++i )); do
        n="$(grep -Ec -- "$2" "$log" || :)"
        if (( n > ${_seen[$key]:-0} )); then
            _seen[$key]=$n
            return 0
        fi
        sleep 0.1
    done
    echo "$0: nbdkit $1 did not log /$2/"
    cat "$log"
    return 1
}

# ---- PSK ----
start_nbdkit psk vol-psk --tls=require --tls-psk="$T/keys.psk"
psk="unix:$CLUSTER/psk.sock"
works psk-1 "$psk" "psk:alice:$T/keys.psk"
# The same server through an NBD URI.
size="$(timeout 60 nbdinfo --size \
    "nbds+unix://alice@/?socket=$CLUSTER/psk.sock&tls-psk-file=$T/keys.psk")"
test "$size" = 1048576
refused 'requires TLS' "$psk" plain
refused 'gnutls_handshake' "$psk" "psk:alice:$T/wrong.psk"
expect_server_error psk 'gnutls_handshake'
refused 'gnutls_handshake' "$psk" "psk:mallory:$T/mallory.psk"
expect_server_error psk 'gnutls_handshake'
# Certificates do not stand in for the key.
refused 'gnutls_' "$psk" "x509:$T/client"
works psk-2 "$psk" "psk:alice:$T/keys.psk"

# ---- X.509, no client certificate needed ----
start_nbdkit_tcp x509 vol-x509 --tls=require \
                 --tls-certificates="$T/server"
x509="tcp:localhost:$PORT"
works x509-1 "$x509" "x509:$T/anon"
works x509-2 "$x509" "x509:$T/client"
refused 'requires TLS' "$x509" plain
# The client does not trust the server's certificate.
refused 'certificate verification' "$x509" "x509:$T/other-ca"
refused 'gnutls_' "$x509" "psk:alice:$T/keys.psk"
check x509-2 "$x509" "x509:$T/anon"

# ---- X.509 with --tls-verify-peer: the client needs a certificate ----
start_nbdkit peer vol-peer --tls=require --tls-certificates="$T/server" \
             --tls-verify-peer
peer="unix:$CLUSTER/peer.sock"
works peer-1 "$peer" "x509:$T/client"
refused 'requires TLS' "$peer" plain
refused 'gnutls_' "$peer" "x509:$T/anon"
expect_server_error peer 'gnutls_handshake: .*certificate'
refused 'gnutls_' "$peer" "x509:$T/rogue"
expect_server_error peer 'gnutls_handshake: .*certificate'
check peer-1 "$peer" "x509:$T/client"

# ---- What each volume holds, read by a plain read-only nbdkit ----
stop_nbdkit psk
stop_nbdkit x509
stop_nbdkit peer
for vt in vol-psk:psk-2 vol-x509:x509-2 vol-peer:peer-1; do
    start_nbdkit plain "${vt%%:*}" -r
    check "${vt#*:}" "unix:$CLUSTER/plain.sock" plain
    stop_nbdkit plain
done
echo "nbd tls: ok"
