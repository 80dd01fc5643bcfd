/// Where nodes reach nodeboot, and how long a waiting node sleeps at most: the two settings
/// that change what is rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderSettings {
    /// Advertised base URL of the boot listener, without a trailing slash.
    pub server_url: String,
    pub retry_max_delay: u32,
}
