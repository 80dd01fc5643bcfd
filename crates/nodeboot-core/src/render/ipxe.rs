//! iPXE scripts: the DHCP bootstrap, the default BSS-shaped boot script and the retry loop.

use bytes::Bytes;

use super::RenderSettings;
use crate::mac::Mac;

/// How a retrying node asks again: by the identifier it used the first time.
#[derive(Debug, Clone, Copy)]
pub enum Asker<'a> {
    Mac(Mac),
    Name(&'a str),
    Nid(i64),
}

/// Why a node is told to wait. Fixed strings: nothing from the inventory reaches `echo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    UnknownNode,
    Unassigned,
    Conflict,
    /// Its BootConfig matches but failed to render for it.
    RenderFailed,
    BootFailed,
}

impl WaitReason {
    /// Fixed text for the node's console.
    pub fn text(self) -> &'static str {
        match self {
            WaitReason::UnknownNode => "this node is in no NodeGroup",
            WaitReason::Unassigned => "no BootConfig matches this node",
            WaitReason::Conflict => "this node is in conflict, see its NodeGroup status",
            WaitReason::RenderFailed => {
                "its BootConfig failed to render for it, see its NodeGroup status"
            }
            WaitReason::BootFailed => "boot failed",
        }
    }
}

/// The first script DHCP hands out: it asks for the real one with the booting interface's MAC.
pub fn bootstrap(server_url: &str) -> String {
    format!(
        "#!ipxe\nchain {server_url}/boot/v1/bootscript?mac=${{netX/mac}}&arch=${{buildarch}} || goto retry\n\
         :retry\necho nodeboot: bootscript request failed, retrying in 10s\nsleep 10\n\
         chain {server_url}/boot/v1/bootscript?mac=${{netX/mac}}&arch=${{buildarch}}&retry=1\n"
    )
}

/// Seconds to sleep before retry number `retry`: grows with each round so a node that waits
/// for hours costs little, and is capped so it boots soon after an administrator fixes it.
pub fn retry_delay(retry: u32, max_delay: u32) -> u32 {
    let grown = 5u32.saturating_mul(retry.saturating_add(1));
    grown.min(max_delay).max(1)
}

/// The default script's body: BSS's shape, every step falling through to `boot_retry`.
pub fn default_head(kernel: &str, initrd: Option<&str>, params: &str) -> String {
    let mut s = String::with_capacity(96 + kernel.len() + params.len());
    s.push_str("#!ipxe\nkernel --name kernel ");
    s.push_str(kernel);
    if initrd.is_some() {
        s.push_str(" initrd=initrd");
    }
    if !params.is_empty() {
        s.push(' ');
        s.push_str(params);
    }
    s.push_str(" || goto boot_retry\n");
    if let Some(initrd) = initrd {
        s.push_str("initrd --name initrd ");
        s.push_str(initrd);
        s.push_str(" || goto boot_retry\n");
    }
    s.push_str("boot || goto boot_retry\n");
    s
}

/// The `:boot_retry` tail: free what was loaded, wait, and ask again with `retry=N+1`.
/// `chain --replace` makes the new script replace this one instead of nesting inside it, so a
/// node can loop for days without exhausting iPXE's memory.
pub fn retry_tail(
    out: &mut impl std::fmt::Write,
    reason: WaitReason,
    asker: Asker<'_>,
    retry: u32,
    settings: &RenderSettings,
) {
    let server_url = &settings.server_url;
    let delay = retry_delay(retry, settings.retry_max_delay);
    let next = retry.saturating_add(1);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        ":boot_retry\necho nodeboot: {}, retrying in {delay}s\nimgfree\nsleep {delay}\nchain --replace {server_url}/boot/v1/bootscript?",
        reason.text()
    );
    let _ = match asker {
        Asker::Mac(mac) => write!(out, "mac={mac}"),
        Asker::Name(name) => write!(out, "name={name}"),
        Asker::Nid(nid) => write!(out, "nid={nid}"),
    };
    let _ = writeln!(out, "&arch=${{buildarch}}&retry={next} || goto boot_retry");
}

/// A script that only waits and asks again: for unknown, unassigned and conflicting nodes.
pub fn wait_script(
    reason: WaitReason,
    asker: Asker<'_>,
    retry: u32,
    settings: &RenderSettings,
) -> String {
    let mut s = String::with_capacity(256);
    s.push_str("#!ipxe\n");
    retry_tail(&mut s, reason, asker, retry, settings);
    s
}

/// A boot script as the snapshot keeps it. The one place that knows which kind a script is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// The default script up to its `:boot_retry` tail. The tail names the asking node and the
    /// request round, so it is added per request: storing it for every node would cost a third
    /// of the scripts' memory.
    Default(Bytes),
    /// A BootConfig's own `script`, served as written.
    Custom(Bytes),
}

impl Script {
    /// The stored bytes: the default script's head, or the whole custom script.
    pub fn stored(&self) -> &Bytes {
        match self {
            Script::Default(b) | Script::Custom(b) => b,
        }
    }

    /// The script served for request round `retry` by `asker`.
    pub fn for_round(&self, asker: Asker<'_>, retry: u32, settings: &RenderSettings) -> Bytes {
        match self {
            Script::Custom(script) => script.clone(),
            Script::Default(head) => {
                let mut out = ByteWriter(Vec::with_capacity(head.len() + 224));
                out.0.extend_from_slice(head);
                retry_tail(&mut out, WaitReason::BootFailed, asker, retry, settings);
                Bytes::from(out.0)
            }
        }
    }
}

/// Lets the tail be written straight after the head's bytes, without checking the head is UTF-8
/// again on every request.
struct ByteWriter(Vec<u8>);

impl std::fmt::Write for ByteWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_and_is_capped() {
        assert_eq!(retry_delay(0, 60), 5);
        assert_eq!(retry_delay(1, 60), 10);
        assert_eq!(retry_delay(100, 60), 60);
        assert_eq!(retry_delay(u32::MAX, 60), 60);
        assert_eq!(retry_delay(3, 0), 1);
    }

    #[test]
    fn default_script_has_bss_shape() {
        let head = default_head("http://i/vmlinuz", Some("http://i/initrd"), "console=ttyS0");
        let settings = RenderSettings {
            server_url: "http://10.0.2.2:8080".into(),
            retry_max_delay: 60,
        };
        let script = Script::Default(Bytes::from(head)).for_round(
            Asker::Mac(Mac::new([2, 0, 0, 0, 0, 1])),
            2,
            &settings,
        );
        assert_eq!(
            std::str::from_utf8(&script).unwrap(),
            "#!ipxe\n\
             kernel --name kernel http://i/vmlinuz initrd=initrd console=ttyS0 || goto boot_retry\n\
             initrd --name initrd http://i/initrd || goto boot_retry\n\
             boot || goto boot_retry\n\
             :boot_retry\n\
             echo nodeboot: boot failed, retrying in 15s\n\
             imgfree\n\
             sleep 15\n\
             chain --replace http://10.0.2.2:8080/boot/v1/bootscript?mac=02:00:00:00:00:01&arch=${buildarch}&retry=3 || goto boot_retry\n"
        );
        let custom = Script::Custom(Bytes::from_static(b"#!ipxe\nexit\n"));
        assert_eq!(
            custom.for_round(Asker::Name("n1"), 7, &settings),
            Bytes::from_static(b"#!ipxe\nexit\n")
        );
    }
}
