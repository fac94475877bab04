#!/bin/sh
# Install Debian's postfix for the end-to-end mail protocol tests without a system instance:
# debconf "No configuration" writes no main.cf and starts nothing on port 25 (docs/testing.md §2).
# Idempotent: does nothing when postfix is already installed. Must run as root.
set -eu

if [ -x /usr/sbin/postfix ]; then
    echo "postfix already installed: $(/usr/sbin/postconf -d -h mail_version 2>/dev/null || echo unknown)"
    exit 0
fi

echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update
apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends postfix
/usr/sbin/postconf -d -h mail_version
