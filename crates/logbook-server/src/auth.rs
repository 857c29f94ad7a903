//! Tenants, tokens and stream namespaces.
//!
//! Tokens are never stored: the config holds their SHA-256 (hex). `AUTH <tenant> <token>`
//! hashes the token and compares digests in constant time; an unknown tenant is compared
//! against a dummy digest so timing does not reveal which tenant names exist.
//!
//! A tenant's stream `order-1` is stored as `<tenant>:order-1` (the rule of
//! `logbook::Namespace`): tenant names are restricted to `[A-Za-z0-9_]` (no `:`), so one
//! tenant's namespace can never be a prefix of another's.
//! The admin authenticates as tenant [`ADMIN_NAME`] and uses full stored names.

use logbook::Namespace;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::config::Config;

/// The tenant name the admin authenticates as.
pub const ADMIN_NAME: &str = "admin";

/// Who a connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No auth configured: full access to full names.
    Open,
    /// The admin: full access to full names.
    Admin,
    /// A tenant: its own namespace only.
    Tenant(Namespace),
}

impl Identity {
    /// The stored name of the client's stream name.
    pub fn to_store(&self, stream: &str) -> String {
        match self {
            Identity::Open | Identity::Admin => stream.to_string(),
            Identity::Tenant(namespace) => namespace.stored_name(stream),
        }
    }

    /// The client's name for a stored stream name (the namespace removed for a tenant).
    pub fn from_store<'a>(&self, stored: &'a str) -> &'a str {
        match self {
            Identity::Open | Identity::Admin => stored,
            Identity::Tenant(namespace) => namespace.local_name(stored).unwrap_or(stored),
        }
    }

    /// The namespace the client is confined to (`None`: everything).
    pub fn namespace(&self) -> Option<&Namespace> {
        match self {
            Identity::Open | Identity::Admin => None,
            Identity::Tenant(namespace) => Some(namespace),
        }
    }

    /// A short name for INFO and logs.
    pub fn label(&self) -> &str {
        match self {
            Identity::Open => "open",
            Identity::Admin => ADMIN_NAME,
            Identity::Tenant(namespace) => namespace.name(),
        }
    }
}

/// The credentials the daemon accepts.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    admin: Option<[u8; 32]>,
    tenants: Vec<(String, [u8; 32])>,
}

/// Why AUTH failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// No tenants are configured, so there is nothing to authenticate against.
    NotConfigured,
    /// Unknown tenant or wrong token (deliberately not saying which).
    Invalid,
}

/// SHA-256 of `token`, as lower-case hex (what the config file stores).
pub fn hash_token_hex(token: &[u8]) -> String {
    hex::encode(Sha256::digest(token))
}

/// 64 hex digits (either case, surrounding blanks ignored) to the 32 bytes of a digest.
fn parse_digest(text: &str, what: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    // hex fails on a wrong length, an odd length or a non-hex character: one message for all.
    hex::decode_to_slice(text.trim(), &mut out)
        .map_err(|_| format!("{what}: token_sha256 must be 64 hex digits (the SHA-256 of the token)"))?;
    Ok(out)
}

/// Tenant names: a namespace name (1..=64 of `[A-Za-z0-9_]`), not the admin's name.
pub fn validate_tenant_name(name: &str) -> Result<(), String> {
    if let Err(e) = Namespace::new(name) {
        return Err(format!("tenant name: {e}"));
    }
    if name == ADMIN_NAME {
        return Err(format!("tenant name '{ADMIN_NAME}' is reserved for the admin"));
    }
    Ok(())
}

impl Auth {
    /// Builds the credential table from the config, checking names and digests.
    pub fn from_config(config: &Config) -> Result<Auth, String> {
        let admin = match &config.admin {
            Some(admin) => Some(parse_digest(&admin.token_sha256, "admin")?),
            None => None,
        };
        let mut tenants: Vec<(String, [u8; 32])> = Vec::with_capacity(config.tenants.len());
        for tenant in &config.tenants {
            validate_tenant_name(&tenant.name)?;
            if tenants.iter().any(|(n, _)| *n == tenant.name) {
                return Err(format!("tenant '{}' is listed twice", tenant.name));
            }
            let digest = parse_digest(&tenant.token_sha256, &tenant.name)?;
            // The console finds an identity by its token alone (a bearer token names no
            // tenant), so two identities with one token would be indistinguishable there.
            if admin == Some(digest) {
                return Err(format!(
                    "tenant '{}' has the admin's token_sha256: every identity needs its own token",
                    tenant.name
                ));
            }
            if let Some((other, _)) = tenants.iter().find(|(_, d)| *d == digest) {
                return Err(format!(
                    "tenants '{other}' and '{}' have the same token_sha256: every identity needs its own token",
                    tenant.name
                ));
            }
            tenants.push((tenant.name.clone(), digest));
        }
        Ok(Auth { admin, tenants })
    }

    /// True when connections must AUTH before anything but PING/HELLO/AUTH/QUIT.
    pub fn required(&self) -> bool {
        self.admin.is_some() || !self.tenants.is_empty()
    }

    /// The identity of a connection before any AUTH.
    pub fn initial_identity(&self) -> Option<Identity> {
        (!self.required()).then_some(Identity::Open)
    }

    /// The identity whose token is `token` (the console's `Authorization: Bearer <token>`,
    /// which names no tenant): the token's digest is compared with every configured digest,
    /// each in constant time and without stopping at a match, so timing does not reveal
    /// which identity matched. Digests are unique (checked by [`Auth::from_config`]).
    pub fn identify(&self, token: &[u8]) -> Result<Identity, AuthError> {
        if !self.required() {
            return Err(AuthError::NotConfigured);
        }
        let presented: [u8; 32] = Sha256::digest(token).into();
        let mut found = None;
        if let Some(admin) = &self.admin {
            if bool::from(presented[..].ct_eq(&admin[..])) {
                found = Some(Identity::Admin);
            }
        }
        for (name, digest) in &self.tenants {
            let matched = bool::from(presented[..].ct_eq(&digest[..]));
            if matched && found.is_none() {
                found = Namespace::new(name).ok().map(Identity::Tenant);
            }
        }
        found.ok_or(AuthError::Invalid)
    }

    /// Checks `token` for `tenant` in constant time (per candidate digest).
    pub fn authenticate(&self, tenant: &str, token: &[u8]) -> Result<Identity, AuthError> {
        if !self.required() {
            return Err(AuthError::NotConfigured);
        }
        let presented: [u8; 32] = Sha256::digest(token).into();
        let expected = if tenant == ADMIN_NAME {
            self.admin
        } else {
            self.tenants.iter().find(|(name, _)| name == tenant).map(|(_, digest)| *digest)
        };
        // Compare against a dummy when the name is unknown, so both paths cost the same; the
        // comparison itself has no early exit (subtle's constant-time equality).
        let compared = expected.unwrap_or([0xA5; 32]);
        let matched = bool::from(presented[..].ct_eq(&compared[..])) && expected.is_some();
        if !matched {
            return Err(AuthError::Invalid);
        }
        Ok(if tenant == ADMIN_NAME {
            Identity::Admin
        } else {
            Identity::Tenant(Namespace::new(tenant).map_err(|_| AuthError::Invalid)?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AdminConfig, TenantConfig};

    fn config() -> Config {
        Config {
            admin: Some(AdminConfig { token_sha256: hash_token_hex(b"root") }),
            tenants: vec![
                TenantConfig { name: "acme".into(), token_sha256: hash_token_hex(b"a-secret") },
                TenantConfig { name: "globex".into(), token_sha256: hash_token_hex(b"g-secret").to_uppercase() },
            ],
            ..Config::default()
        }
    }

    #[test]
    fn known_digest() {
        assert_eq!(hash_token_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn authenticate_each_identity() {
        let auth = Auth::from_config(&config()).unwrap();
        assert!(auth.required());
        assert_eq!(auth.initial_identity(), None);
        assert_eq!(auth.authenticate("admin", b"root"), Ok(Identity::Admin));
        let acme = auth.authenticate("acme", b"a-secret").unwrap();
        assert_eq!(acme.to_store("order-1"), "acme:order-1");
        assert_eq!(acme.from_store("acme:order-1"), "order-1");
        assert_eq!(acme.namespace().map(Namespace::prefix), Some("acme:"));
        assert!(auth.authenticate("globex", b"g-secret").is_ok(), "upper-case hex accepted");
        assert_eq!(auth.authenticate("acme", b"g-secret"), Err(AuthError::Invalid));
        assert_eq!(auth.authenticate("nobody", b"a-secret"), Err(AuthError::Invalid));
        assert_eq!(auth.authenticate("admin", b"a-secret"), Err(AuthError::Invalid));
    }

    #[test]
    fn a_bearer_token_finds_its_identity() {
        let auth = Auth::from_config(&config()).unwrap();
        assert_eq!(auth.identify(b"root"), Ok(Identity::Admin));
        assert_eq!(auth.identify(b"a-secret").unwrap().label(), "acme");
        assert_eq!(auth.identify(b"g-secret").unwrap().label(), "globex");
        assert_eq!(auth.identify(b"acme"), Err(AuthError::Invalid));
        assert_eq!(auth.identify(b""), Err(AuthError::Invalid));
        let open = Auth::from_config(&Config::default()).unwrap();
        assert_eq!(open.identify(b"root"), Err(AuthError::NotConfigured));
    }

    #[test]
    fn two_identities_with_one_token_are_refused() {
        let mut c = config();
        c.tenants[1].token_sha256 = hash_token_hex(b"a-secret");
        let err = Auth::from_config(&c).unwrap_err();
        assert!(err.contains("'acme' and 'globex' have the same token_sha256"), "{err}");
        let mut c = config();
        c.tenants[0].token_sha256 = hash_token_hex(b"root").to_uppercase();
        let err = Auth::from_config(&c).unwrap_err();
        assert!(err.contains("tenant 'acme' has the admin's token_sha256"), "{err}");
    }

    #[test]
    fn open_mode() {
        let auth = Auth::from_config(&Config::default()).unwrap();
        assert_eq!(auth.initial_identity(), Some(Identity::Open));
        assert_eq!(auth.authenticate("x", b"y"), Err(AuthError::NotConfigured));
        assert_eq!(Identity::Open.to_store("a:b"), "a:b");
    }

    #[test]
    fn bad_config_rejected() {
        let mut c = config();
        c.tenants[0].name = "ac:me".into();
        assert!(Auth::from_config(&c).is_err());
        let mut c = config();
        c.tenants[0].name = "admin".into();
        assert!(Auth::from_config(&c).is_err());
        let mut c = config();
        c.tenants[1].name = "acme".into();
        assert!(Auth::from_config(&c).unwrap_err().contains("twice"));
        let mut c = config();
        c.tenants[0].token_sha256 = "abc".into();
        assert!(Auth::from_config(&c).is_err());
    }

    #[test]
    fn digests_are_64_hex_digits() {
        let digest = hash_token_hex(b"abc");
        let parsed = parse_digest(&format!("  {}\n", digest.to_uppercase()), "t").unwrap();
        assert_eq!(parsed[..4], [0xba, 0x78, 0x16, 0xbf]);
        assert_eq!(parsed[28..], [0xf2, 0x00, 0x15, 0xad]);
        let message = "t: token_sha256 must be 64 hex digits (the SHA-256 of the token)";
        for bad in [
            String::new(),
            "abc".into(),
            format!("{digest}0"),
            format!("{digest}00"),
            format!("{}zz", &digest[..62]),
            format!("+{}", &digest[..63]),
            format!("é{}", &digest[..62]),
        ] {
            assert_eq!(parse_digest(&bad, "t"), Err(message.to_string()), "{bad:?}");
        }
    }
}
