//! Persistence of the configuration: `config.json` for every writable key (and read-only
//! overrides), `secrets.json` (mode 0600) for the AuthorizationKey. Loading validates every
//! stored value; a change is written to the file before memory changes.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::registry::keys::AUTHORIZATION_KEY;
use super::registry::{Access, REGISTRY, index_of};
use super::rules::check_authorization_key;
use super::{
    CONFIG_FILE, Configuration, Error, FILE_VERSION, Result, SECRETS_FILE, borrow_default,
};
use crate::stack::secret::Secret;
use crate::storage;

#[derive(Serialize, Deserialize)]
struct ConfigFile {
    version: u32,
    /// Every writable key (not AuthorizationKey, which lives in `secrets.json`).
    values: BTreeMap<String, String>,
    /// Read-only keys changed with `set_internal`, only where they differ from the firmware.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    overrides: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct SecretsFile {
    version: u32,
    #[serde(
        rename = "AuthorizationKey",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    authorization_key: Option<String>,
}

impl Configuration {
    /// Loads `config.json` and `secrets.json` from `state_dir`, or starts from defaults when
    /// they do not exist. Nothing is written until the first change.
    pub fn open(state_dir: &Path) -> Result<Configuration> {
        let mut cfg = Configuration::in_memory();
        let config_path = state_dir.join(CONFIG_FILE);
        if let Some(bytes) = storage::read_optional(&config_path).map_err(|source| Error::Read {
            path: config_path.clone(),
            source,
        })? {
            cfg.load_values(&config_path, &bytes)?;
        }
        let secrets_path = state_dir.join(SECRETS_FILE);
        if let Some(bytes) =
            storage::read_optional(&secrets_path).map_err(|source| Error::Read {
                path: secrets_path.clone(),
                source,
            })?
        {
            cfg.load_secrets(&secrets_path, &bytes)?;
        }
        if cfg.security_profile() >= 1 && cfg.authorization_key.is_none() {
            tracing::warn!(
                profile = cfg.security_profile(),
                "SecurityProfile needs an AuthorizationKey but none is stored"
            );
        }
        cfg.state_dir = Some(state_dir.to_path_buf());
        Ok(cfg)
    }

    fn load_values(&mut self, path: &Path, bytes: &[u8]) -> Result<()> {
        let doc: ConfigFile = serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
        if doc.version != FILE_VERSION {
            return Err(Error::Version {
                path: path.to_path_buf(),
                found: doc.version,
            });
        }
        // Lists are validated against read-only limits (MaxLength keys, NumberOfConnectors), so
        // the overrides of those are applied first.
        for (map, read_only) in [(&doc.overrides, true), (&doc.values, false)] {
            for (name, value) in map {
                let Some(i) = index_of(name) else {
                    tracing::debug!(key = %name, file = %path.display(), "ignoring stored value of a key this build does not have");
                    continue;
                };
                let spec = &REGISTRY[i];
                if spec.is_secret() || (spec.access == Access::ReadOnly) != read_only {
                    // Read-only keys under "values" were written by an older layout; the
                    // firmware's own value wins.
                    continue;
                }
                let canonical =
                    self.validate(spec, value)
                        .map_err(|reason| Error::StoredValue {
                            path: path.to_path_buf(),
                            key: name.clone(),
                            reason,
                        })?;
                self.values[i] = borrow_default(i, canonical);
            }
        }
        Ok(())
    }

    fn load_secrets(&mut self, path: &Path, bytes: &[u8]) -> Result<()> {
        // serde_json's messages may quote the offending text, so only its position is reported.
        let doc: SecretsFile = serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
            path: path.to_path_buf(),
            problem: format!(
                "malformed or unexpected content at line {} column {}",
                e.line(),
                e.column()
            ),
        })?;
        if doc.version != FILE_VERSION {
            return Err(Error::Version {
                path: path.to_path_buf(),
                found: doc.version,
            });
        }
        if let Some(k) = doc.authorization_key {
            check_authorization_key(&k).map_err(|reason| Error::StoredValue {
                path: path.to_path_buf(),
                key: AUTHORIZATION_KEY.to_string(),
                reason,
            })?;
            self.authorization_key = Some(Secret::new(k));
        }
        Ok(())
    }

    /// Stores `canonical` at registry index `i`: file first, memory only when the write worked.
    pub(super) fn commit(&mut self, i: usize, canonical: String) -> Result<()> {
        if self.values[i] == canonical {
            return Ok(());
        }
        if let Some(dir) = &self.state_dir {
            let mut doc = ConfigFile {
                version: FILE_VERSION,
                values: BTreeMap::new(),
                overrides: BTreeMap::new(),
            };
            for (j, (spec, value)) in REGISTRY.iter().zip(self.values.iter()).enumerate() {
                let value: &str = if j == i { &canonical } else { value };
                if spec.is_secret() {
                    continue;
                }
                if spec.access != Access::ReadOnly {
                    doc.values.insert(spec.name.to_string(), value.to_string());
                } else if value != spec.default {
                    doc.overrides
                        .insert(spec.name.to_string(), value.to_string());
                }
            }
            let path = dir.join(CONFIG_FILE);
            let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| Error::Write {
                path: path.clone(),
                source: std::io::Error::other(e),
            })?;
            storage::write_doc("config", &path, &bytes)
                .map_err(|source| Error::Write { path, source })?;
        }
        self.values[i] = borrow_default(i, canonical);
        Ok(())
    }

    pub(super) fn commit_secret(&mut self, key: Option<Secret>) -> Result<()> {
        if let Some(dir) = &self.state_dir {
            let doc = SecretsFile {
                version: FILE_VERSION,
                authorization_key: key.as_ref().map(|k| k.expose().to_string()),
            };
            let path = dir.join(SECRETS_FILE);
            // Serialising a struct of strings cannot fail; map it anyway, without the content.
            let bytes = serde_json::to_vec_pretty(&doc).map_err(|_| Error::Write {
                path: path.clone(),
                source: std::io::Error::other("cannot encode secrets document"),
            })?;
            storage::write_doc_private("secrets", &path, &bytes)
                .map_err(|source| Error::Write { path, source })?;
        }
        self.authorization_key = key;
        Ok(())
    }
}
