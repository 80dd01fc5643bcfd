#!/usr/bin/env bash
# Installs the Debian packages the boot tests need (QEMU, Debian's iPXE ROMs, a static busybox
# and cpio for the test initrd). The list lives in one place, hack/install-test-deps.sh, which
# installs what any test needs and is a no-op when everything is present.
set -euo pipefail
exec "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../../hack/install-test-deps.sh"
