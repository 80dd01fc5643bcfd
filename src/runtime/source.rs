use std::future::Future;

use nodeboot_core::snapshot::Desired;

/// Where the desired state comes from: the manifest folder (`nodeboot serve`) or the
/// cluster's watches (`nodeboot run`). The runtime's rebuild loop is the only caller.
pub trait Source: Send + 'static {
    /// Completes when the inputs may have changed; the first time, once they can be read.
    fn changed(&mut self) -> impl Future<Output = ()> + Send;

    /// The inputs as they are now, or `None` when there is nothing new to build (unchanged, or
    /// unreadable: the last snapshot stays). May block: it runs off the reactor.
    fn load(&mut self) -> Option<Desired>;
}
