#!/bin/sh
# The commands of the ARC CE attempt (docs/arc.md), in the order they were run
# on 2026-12-06, as root on the Debian 12 host: first typed one step at a time,
# then run once as a whole against a fresh root (R=/var/cache/updraft-arc/root2),
# which finished but showed the /etc/hosts problem fixed in step 2 below; this
# fixed version has not been re-run from nothing. It starts daemons and leaves
# them running, with proc mounted in the root: see docs/arc.md for stopping.
# Files referred to as docs/arc/* are the ones next to this file.
set -eu
R=${R:-/var/cache/updraft-arc/root}
DOCS=$(dirname "$0")

# 1. A trixie root of our own (not the shared lab root).
debootstrap --variant=minbase trixie "$R" http://deb.debian.org/debian
mount -t proc proc "$R/proc"
chroot "$R" apt-get update

# 2. Before installing: the host name must resolve inside the root (the arex
#    postinst makes a test CA and a host certificate for `hostname -f`), and
#    package scripts must not start daemons. debootstrap leaves no /etc/hosts
#    (netbase's postinst writes one only if none exists), so write it whole:
#    without the localhost line A-REX cannot fetch the issuer's JWKS.
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t%s\n' \
    "$(hostname)" >"$R/etc/hosts"
printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"
chmod +x "$R/usr/sbin/policy-rc.d"
chroot "$R" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    nordugrid-arc-arex nordugrid-arc-arcctl nordugrid-arc-arcctl-service nordugrid-arc-client \
    nordugrid-arc-plugins-needed nordugrid-arc-test-utils htcondor openssl \
    python3-jwt python3-cryptography curl ca-certificates procps

# 3. An unprivileged user (the mapping target and the HTCondor submitter), a
#    host certificate for "localhost" and a user certificate, both from the
#    test CA that the postinst created.
chroot "$R" useradd -m -u 30961 labuser
chroot "$R" sh -c 'cd /tmp && arcctl test-ca hostcert -n localhost -f &&
    install -m644 host-localhost-cert.pem /etc/grid-security/localhost-hostcert.pem &&
    install -m600 host-localhost-key.pem /etc/grid-security/localhost-hostkey.pem &&
    arcctl test-ca usercert -n labuser -i labuser'

# 4. A-REX configuration and its directories. The postinst's drop-in
#    (/etc/arc.conf.d/00-testCA-hostcert.conf) points at the "vm" certificate
#    and maps to nobody: removed.
rm -f "$R/etc/arc.conf.d/00-testCA-hostcert.conf"
cp "$DOCS/arc.conf" "$R/etc/arc.conf"
mkdir -p "$R/var/lib/arclab/control" "$R/var/lib/arclab/session" "$R/var/lib/arclab/tmp" "$R/var/log/arclab"
chmod 1777 "$R/var/lib/arclab/tmp"
chroot "$R" chown labuser:labuser /var/lib/arclab/session
# The WS start script would otherwise run `openssl dhparam 4096` in the background.
chroot "$R" openssl dhparam -dsaparam -out /var/lib/arclab/control/dhparam.pem 2048
chmod 600 "$R/var/lib/arclab/control/dhparam.pem"
chroot "$R" arcctl config verify

# 5. The WS start script listens on every address; a copy that binds 127.0.0.1.
mkdir -p "$R/usr/local/lib/arclab"
sed 's#<tcp:Listen><tcp:Port>\$arex_port</tcp:Port></tcp:Listen>#<tcp:Listen><tcp:Interface>127.0.0.1</tcp:Interface><tcp:Port>$arex_port</tcp:Port><tcp:Version>4</tcp:Version></tcp:Listen>#' \
    "$R/usr/share/arc/arc-arex-ws-start" >"$R/usr/local/lib/arclab/arc-arex-ws-start"
chmod +x "$R/usr/local/lib/arclab/arc-arex-ws-start"

# 6. The token issuer (for token auth), A-REX (job processing) and A-REX WS (REST on :30960).
mkdir -p "$R/srv/issuer"
cp "$DOCS/issuer.py" "$R/srv/issuer/issuer.py"
setsid chroot "$R" python3 /srv/issuer/issuer.py serve >/var/cache/updraft-arc/issuer.out 2>&1 &
setsid chroot "$R" /usr/share/arc/arc-arex-start -f >/var/cache/updraft-arc/arex.out 2>&1 &
setsid chroot "$R" /usr/local/lib/arclab/arc-arex-ws-start -f >/var/cache/updraft-arc/arexws.out 2>&1 &
sleep 5

# 7. A personal schedd in the same root.
cp "$DOCS/condor-50-arclab.conf" "$R/etc/condor/config.d/50-arclab.conf"
setsid chroot "$R" /usr/sbin/condor_master -f >/var/cache/updraft-arc/condor.out 2>&1 &
sleep 8

# 8. Credentials for labuser: an RFC proxy (X.509 path) and a token (token path).
chroot "$R" su - labuser -c 'arcproxy'
chroot "$R" sh -c 'python3 /srv/issuer/issuer.py mint labpilot https://localhost:30960 \
    "compute.create compute.read compute.modify compute.cancel" >/home/labuser/token.jwt &&
    chown labuser /home/labuser/token.jwt && chmod 600 /home/labuser/token.jwt'

# 9. Jobs through arc_gahp (submit files next to this script).
mkdir -p "$R/home/labuser/job"
cp "$DOCS/hello.sh" "$DOCS/arc-x509.sub" "$DOCS/arc-token.sub" "$DOCS/arc-updraft-shape.sub" "$R/home/labuser/job/"
chroot "$R" chown -R labuser:labuser /home/labuser/job
chroot "$R" su - labuser -c 'cd job && condor_submit arc-x509.sub && condor_submit arc-token.sub'
chroot "$R" condor_reschedule
