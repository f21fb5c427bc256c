//! The GeoIP adapter: a MaxMind database (`[geoip] database`, read once at config load) that
//! turns a client address into the ISO country code expressions read as `request.country`.

use std::net::IpAddr;
use std::path::Path;

/// A country database held in memory.
pub struct GeoIp {
    reader: maxminddb::Reader<Vec<u8>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("database_type", &self.reader.metadata().database_type)
            .finish()
    }
}

impl GeoIp {
    /// Reads the whole database at `path` (once: lookups never touch the disk).
    ///
    /// # Errors
    /// Why the file cannot be used: unreadable, or not a MaxMind database.
    pub fn open(path: &Path) -> Result<GeoIp, String> {
        let reader = maxminddb::Reader::open_readfile(path).map_err(|e| match e {
            maxminddb::MaxMindDbError::Io(io) => format!("cannot read {}: {io}", path.display()),
            other => format!("{} is not a MaxMind database: {other}", path.display()),
        })?;
        Ok(GeoIp { reader })
    }

    /// The ISO 3166-1 alpha-2 code of the country `ip` is in (`"GB"`), or `""` when the address
    /// does not parse or the database has no country for it. An IPv4 address seen as
    /// `::ffff:a.b.c.d` is looked up as IPv4.
    pub fn country(&self, ip: &str) -> String {
        let Ok(ip) = ip.parse::<IpAddr>() else {
            return String::new();
        };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let Ok(found) = self.reader.lookup(ip) else {
            return String::new();
        };
        found
            .decode_path::<String>(&maxminddb::path!["country", "iso_code"])
            .ok()
            .flatten()
            .unwrap_or_default()
    }
}
