//! Provisioning profiles (`profiles/*.toml`): one per CSMS operator or site type. A profile
//! gives the OCPP endpoint, the security profile and configuration keys, with variables
//! (`${CHARGE_POINT_ID}`) and secrets taken from the environment or a prompt, never stored in the
//! profile. The same profile drives `provision` (a real charger over the service port) and
//! `emulate --profile` (a dry run).
//!
//! ```toml
//! name = "Example operator"
//! description = "Production CSMS of Example, security profile 1"
//!
//! [variables]
//! CHARGE_POINT_ID = { description = "Charge point id registered at the operator" }
//! SITE = { description = "Site code", default = "HQ" }
//!
//! [ocpp]
//! csms_url = "wss://csms.example.com/ocpp"
//! charge_point_id = "${SITE}-${CHARGE_POINT_ID}"
//! security_profile = 1
//! authorization_key = { env = "EXAMPLE_AUTH_KEY", prompt = "AuthorizationKey (hex)" }
//!
//! [config]
//! HeartbeatInterval = 300
//! MeterValuesSampledData = "Energy.Active.Import.Register,Current.Import"
//! ```

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::stack::config;
use crate::stack::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `path:line:column: message`
    #[error("{path}:{line}:{column}: {message}")]
    At {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: variable {name} has no value: pass --set {name}=VALUE")]
    MissingVariable { path: PathBuf, name: String },
    /// `${SERIAL}`, `${MODEL}` or `${FIRMWARE}` where no charger's identity is known.
    #[error("{path}: ${{{name}}} is filled from the charger's identity, which is not known here")]
    MissingBuiltin { path: PathBuf, name: String },
    #[error("{path}: the secret {what} is not set: export {env}{prompt}")]
    MissingSecret {
        path: PathBuf,
        what: String,
        env: String,
        prompt: &'static str,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    variables: BTreeMap<String, RawVariable>,
    #[serde(default)]
    ocpp: RawOcpp,
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
    commissioning: Option<RawCommissioning>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommissioning {
    #[serde(default)]
    accepted_id_tags: Vec<toml::Spanned<String>>,
    remote_start: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawVariable {
    description: Option<String>,
    default: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOcpp {
    csms_url: Option<String>,
    charge_point_id: Option<String>,
    security_profile: Option<u8>,
    authorization_key: Option<RawSecret>,
    basic_auth_password: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    env: String,
    prompt: Option<String>,
}

/// What the site expects from the CSMS (`[commissioning]`), checked by `chargectl dry-run`:
///
/// ```toml
/// [commissioning]
/// accepted_id_tags = ["04A2B3C4D5"]   # cards the CSMS must accept
/// remote_start = true                 # the CSMS must start sessions remotely
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Commissioning {
    pub accepted_id_tags: Vec<String>,
    pub remote_start: Option<bool>,
}

/// A variable the profile needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    pub name: String,
    pub description: Option<String>,
    pub default: Option<String>,
}

/// A secret the profile needs, and where it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretSource {
    /// The configuration key it sets (AuthorizationKey).
    pub key: String,
    pub env: String,
    pub prompt: Option<String>,
}

/// The profiles shipped in `profiles/`, embedded so they work from an installed binary.
pub const SHIPPED: &[(&str, &str)] = &[
    ("sandbox", include_str!("../../profiles/sandbox.toml")),
    (
        "basic-auth-wss",
        include_str!("../../profiles/basic-auth-wss.toml"),
    ),
    (
        "free-charging",
        include_str!("../../profiles/free-charging.toml"),
    ),
];

/// Variables filled from the charger itself (its identity, read over the service link): never
/// declared in `[variables]` nor given with `--set`.
pub const BUILTIN_VARIABLES: &[&str] = &["SERIAL", "MODEL", "FIRMWARE"];

/// The values of the [`BUILTIN_VARIABLES`] for one charger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Builtins {
    /// `${SERIAL}`: the charger's serial number.
    pub serial: Option<String>,
    /// `${MODEL}`: its model.
    pub model: Option<String>,
    /// `${FIRMWARE}`: the firmware version it runs.
    pub firmware: Option<String>,
}

impl Builtins {
    /// The values of one charger.
    pub fn of(serial: &str, model: &str, firmware: &str) -> Builtins {
        Builtins {
            serial: Some(serial.to_string()),
            model: Some(model.to_string()),
            firmware: Some(firmware.to_string()),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        match name {
            "SERIAL" => self.serial.as_deref(),
            "MODEL" => self.model.as_deref(),
            "FIRMWARE" => self.firmware.as_deref(),
            _ => None,
        }
    }
}

/// Asks the user for a secret (only when interactive); gets the prompt text.
pub type Prompt<'a> = &'a dyn Fn(&str) -> Option<String>;

/// A parsed profile, before variables and secrets are resolved.
#[derive(Debug, Clone)]
pub struct ProvisioningProfile {
    pub path: PathBuf,
    pub name: String,
    pub description: Option<String>,
    pub variables: Vec<Variable>,
    pub secrets: Vec<SecretSource>,
    /// The `[commissioning]` table, when the profile has one.
    pub commissioning: Option<Commissioning>,
    /// (key, value template) in the order they must be written.
    assignments: Vec<(String, String)>,
}

/// One key to write. Secret values print as `<redacted>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub key: String,
    pub value: AssignedValue,
}

/// One key of a profile as `chargectl profile show` prints it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Shown {
    pub key: String,
    /// Resolved as far as possible; a secret is always the redaction placeholder.
    pub value: String,
    /// Where a secret comes from, and whether it is set there now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretShown>,
    /// Variables left as `${NAME}` (built-in ones, or ones with no value here).
    pub unresolved: Vec<String>,
}

/// A secret's source, for `chargectl profile show`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SecretShown {
    /// The environment variable it is read from.
    pub env: String,
    /// Whether that variable is set now.
    pub present: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AssignedValue {
    Plain(String),
    Secret(Secret),
}

impl AssignedValue {
    /// The value to send to the charger.
    pub fn expose(&self) -> &str {
        match self {
            AssignedValue::Plain(v) => v,
            AssignedValue::Secret(s) => s.expose(),
        }
    }

    /// The value to show a person.
    pub fn shown(&self) -> String {
        match self {
            AssignedValue::Plain(v) => v.clone(),
            AssignedValue::Secret(s) => s.to_string(),
        }
    }
}

impl ProvisioningProfile {
    /// Reads and checks a profile file. Every problem names the line and column.
    pub fn load(path: &Path) -> Result<ProvisioningProfile> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        ProvisioningProfile::parse(path, &text)
    }

    /// Finds a profile: a file path, else `<user_dir>/NAME.toml`, else a shipped profile by name.
    pub fn find(name_or_path: &str, user_dir: &Path) -> Result<ProvisioningProfile> {
        let p = Path::new(name_or_path);
        if p.exists() {
            return ProvisioningProfile::load(p);
        }
        let candidate = user_dir.join(format!("{name_or_path}.toml"));
        if candidate.exists() {
            return ProvisioningProfile::load(&candidate);
        }
        if let Some((name, text)) = SHIPPED.iter().find(|(n, _)| *n == name_or_path) {
            return ProvisioningProfile::parse(Path::new(&format!("{name}.toml")), text);
        }
        Err(Error::Read {
            path: p.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "no such profile (not a file, not in {}, not a shipped profile: {})",
                    user_dir.display(),
                    SHIPPED
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        })
    }

    pub fn parse(path: &Path, text: &str) -> Result<ProvisioningProfile> {
        let at = |span: Option<std::ops::Range<usize>>, message: String| {
            let (line, column) = span.map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            Error::At {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let raw: RawProfile =
            toml::from_str(text).map_err(|e| at(e.span(), e.message().to_string()))?;
        // Spans of [config] keys, to point at a bad key or value.
        let doc: toml::Spanned<toml::Table> =
            toml::from_str(text).map_err(|e| at(e.span(), e.message().to_string()))?;
        let key_span = |table: &str, key: &str| -> Option<std::ops::Range<usize>> {
            find_key_span(text, table, key).or_else(|| Some(doc.span()))
        };

        let mut assignments = Vec::new();
        let mut secrets = Vec::new();
        let ocpp = &raw.ocpp;
        if let Some(url) = &ocpp.csms_url {
            assignments.push(("CsmsUrl".to_string(), url.clone()));
        }
        if let Some(id) = &ocpp.charge_point_id {
            assignments.push(("ChargePointId".to_string(), id.clone()));
        }
        if let Some(p) = &ocpp.basic_auth_password {
            assignments.push(("BasicAuthPassword".to_string(), p.clone()));
        }
        if let Some(s) = &ocpp.authorization_key {
            if s.env.is_empty() {
                return Err(at(
                    key_span("ocpp", "authorization_key"),
                    "authorization_key needs an env variable name".into(),
                ));
            }
            secrets.push(SecretSource {
                key: "AuthorizationKey".into(),
                env: s.env.clone(),
                prompt: s.prompt.clone(),
            });
        }
        if let Some(sp) = ocpp.security_profile {
            if sp > 1 {
                return Err(at(
                    key_span("ocpp", "security_profile"),
                    format!("security_profile {sp}: this charger supports only 0 and 1"),
                ));
            }
            if sp == 1 && ocpp.authorization_key.is_none() {
                return Err(at(
                    key_span("ocpp", "security_profile"),
                    "security_profile 1 needs an authorization_key".into(),
                ));
            }
        }
        for (key, value) in &raw.config {
            let span = key_span("config", key);
            let spec = config::spec(key)
                .ok_or_else(|| at(span.clone(), format!("unknown configuration key {key}")))?;
            if matches!(spec.access, config::Access::ReadOnly) {
                return Err(at(span, format!("{key} is read-only")));
            }
            if key == "AuthorizationKey" {
                return Err(at(
                    span,
                    "AuthorizationKey is a secret: use [ocpp] authorization_key = { env = \"...\" }".into(),
                ));
            }
            if key == "SecurityProfile" {
                return Err(at(
                    span,
                    "set SecurityProfile with [ocpp] security_profile".into(),
                ));
            }
            let text_value = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => {
                    let mut parts = Vec::new();
                    for i in items {
                        match i {
                            toml::Value::String(s) => parts.push(s.clone()),
                            other => {
                                return Err(at(
                                    span,
                                    format!("{key}: list items must be strings, got {other}"),
                                ));
                            }
                        }
                    }
                    parts.join(",")
                }
                other => {
                    return Err(at(
                        span,
                        format!("{key}: expected a string, integer, boolean or list, got {other}"),
                    ));
                }
            };
            assignments.push((key.clone(), text_value));
        }
        // SecurityProfile last: the key must be in place before the profile changes.
        if let Some(sp) = ocpp.security_profile {
            assignments.push(("SecurityProfile".into(), sp.to_string()));
        }
        let variables: Vec<Variable> = raw
            .variables
            .iter()
            .map(|(name, v)| Variable {
                name: name.clone(),
                description: v.description.clone(),
                default: v.default.clone(),
            })
            .collect();
        for v in &variables {
            if BUILTIN_VARIABLES.contains(&v.name.as_str()) {
                return Err(at(
                    find_key_span(text, "variables", &v.name),
                    format!(
                        "{} is filled from the charger's identity: use ${{{}}} without declaring it",
                        v.name, v.name
                    ),
                ));
            }
        }
        // Every ${VAR} used must be declared, or be a built-in variable.
        for (key, value) in &assignments {
            for name in placeholders(value) {
                if !variables.iter().any(|v| v.name == name)
                    && !BUILTIN_VARIABLES.contains(&name.as_str())
                {
                    let span = find_key_span(text, "ocpp", &ocpp_field_name(key))
                        .or_else(|| find_key_span(text, "config", key));
                    return Err(at(
                        span,
                        format!("${{{name}}} is used but not declared in [variables]"),
                    ));
                }
            }
        }
        let commissioning = match &raw.commissioning {
            Some(c) => {
                let mut tags: Vec<String> = Vec::new();
                for tag in &c.accepted_id_tags {
                    let t = tag.get_ref();
                    if t.is_empty() || t.chars().count() > 20 {
                        return Err(at(
                            Some(tag.span()),
                            format!("accepted_id_tags: \"{t}\" must be 1 to 20 characters"),
                        ));
                    }
                    if !tags.contains(t) {
                        tags.push(t.clone());
                    }
                }
                Some(Commissioning {
                    accepted_id_tags: tags,
                    remote_start: c.remote_start,
                })
            }
            None => None,
        };
        Ok(ProvisioningProfile {
            commissioning,
            path: path.to_path_buf(),
            name: raw.name.unwrap_or_else(|| {
                path.file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("profile")
                    .to_string()
            }),
            description: raw.description,
            variables,
            secrets,
            assignments,
        })
    }

    /// Resolves variables (from `set`, then defaults) and secrets (from the environment, then
    /// `prompt` when given) into the keys to write, in order. A built-in variable
    /// (`${SERIAL}`, ...) is an error here: see [`ProvisioningProfile::resolve_for`].
    pub fn resolve(
        &self,
        set: &BTreeMap<String, String>,
        env: &dyn Fn(&str) -> Option<String>,
        prompt: Option<Prompt<'_>>,
    ) -> Result<Vec<Assignment>> {
        self.resolve_for(&Builtins::default(), set, env, prompt)
    }

    /// The built-in variables the profile uses (`SERIAL`, ...), in the order of first use.
    pub fn builtins_used(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for (_, template) in &self.assignments {
            for name in placeholders(template) {
                if let Some(b) = BUILTIN_VARIABLES.iter().find(|b| **b == name)
                    && !out.contains(b)
                {
                    out.push(b);
                }
            }
        }
        out
    }

    /// The keys the profile sets with their value templates (`${VAR}` unresolved), in order;
    /// the secrets are not among them (see [`ProvisioningProfile::secrets`]).
    pub fn templates(&self) -> impl Iterator<Item = (&str, &str)> {
        self.assignments
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// [`ProvisioningProfile::resolve`] for one charger: `${SERIAL}`, `${MODEL}` and `${FIRMWARE}` come from
    /// `builtins` (its identity).
    pub fn resolve_for(
        &self,
        builtins: &Builtins,
        set: &BTreeMap<String, String>,
        env: &dyn Fn(&str) -> Option<String>,
        prompt: Option<Prompt<'_>>,
    ) -> Result<Vec<Assignment>> {
        for name in set.keys() {
            if BUILTIN_VARIABLES.contains(&name.as_str()) {
                return Err(Error::Invalid {
                    path: self.path.clone(),
                    message: format!(
                        "--set {name}: ${{{name}}} is filled from the charger's identity and cannot be set"
                    ),
                });
            }
            if !self.variables.iter().any(|v| &v.name == name) {
                return Err(Error::Invalid {
                    path: self.path.clone(),
                    message: format!(
                        "--set {name}: the profile has no such variable (it has: {})",
                        self.variables
                            .iter()
                            .map(|v| v.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        }
        let mut values = BTreeMap::new();
        for v in &self.variables {
            let value = set.get(&v.name).cloned().or_else(|| v.default.clone());
            if let Some(value) = value {
                values.insert(v.name.clone(), value);
            }
        }
        let mut out = Vec::new();
        for (key, template) in &self.assignments {
            let mut value = String::new();
            let mut rest = template.as_str();
            while let Some(start) = rest.find("${") {
                value.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let end = after.find('}').unwrap_or(after.len());
                let name = &after[..end];
                let v = if BUILTIN_VARIABLES.contains(&name) {
                    builtins.get(name).ok_or_else(|| Error::MissingBuiltin {
                        path: self.path.clone(),
                        name: name.to_string(),
                    })?
                } else {
                    values
                        .get(name)
                        .map(String::as_str)
                        .ok_or_else(|| Error::MissingVariable {
                            path: self.path.clone(),
                            name: name.to_string(),
                        })?
                };
                value.push_str(v);
                rest = after.get(end + 1..).unwrap_or("");
            }
            value.push_str(rest);
            out.push(Assignment {
                key: key.clone(),
                value: AssignedValue::Plain(value),
            });
        }
        for s in &self.secrets {
            let value = env(&s.env)
                .or_else(|| prompt.and_then(|p| p(s.prompt.as_deref().unwrap_or(&s.key))));
            let Some(value) = value.filter(|v| !v.is_empty()) else {
                return Err(Error::MissingSecret {
                    path: self.path.clone(),
                    what: s.key.clone(),
                    env: s.env.clone(),
                    prompt: if prompt.is_some() {
                        ""
                    } else {
                        " (no prompt without a terminal)"
                    },
                });
            };
            out.push(Assignment {
                key: s.key.clone(),
                value: AssignedValue::Secret(Secret::new(value)),
            });
        }
        // Secrets go before SecurityProfile, which must come last.
        Ok(super::workflow::write_order(out))
    }

    /// Problems beyond parsing, for `chargectl profile check`: every literal value (one without
    /// `${VAR}`) that the charger's rules would refuse, at the line and column of its key in
    /// `text` (the profile's file). Values with variables are checked when provisioning.
    pub fn check_values(&self, text: &str) -> Vec<Error> {
        let mut scratch = config::Configuration::in_memory();
        let mut errors = Vec::new();
        for (key, template) in &self.assignments {
            if key == "SecurityProfile" || !placeholders(template).is_empty() {
                continue;
            }
            let refusal = match scratch.change(key, template, config::Channel::Service) {
                config::ChangeOutcome::Accepted | config::ChangeOutcome::RebootRequired => None,
                config::ChangeOutcome::Rejected(why) => {
                    Some(format!("{key} = {template:?}: {why}"))
                }
                config::ChangeOutcome::NotSupported => {
                    Some(format!("{key}: not supported by this charger"))
                }
            };
            if let Some(message) = refusal {
                let span = find_key_span(text, "ocpp", &ocpp_field_name(key))
                    .or_else(|| find_key_span(text, "config", key));
                let (line, column) = span.map(|s| line_col(text, s.start)).unwrap_or((1, 1));
                errors.push(Error::At {
                    path: self.path.clone(),
                    line,
                    column,
                    message,
                });
            }
        }
        errors
    }

    /// The profile as `chargectl profile show` prints it: every key with its value resolved as
    /// far as it can be without a charger (variables from `set`, then the environment, then
    /// defaults; built-in and missing variables stay `${NAME}`), secrets masked.
    pub fn preview(
        &self,
        builtins: &Builtins,
        set: &BTreeMap<String, String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<Shown>> {
        for name in set.keys() {
            if !self.variables.iter().any(|v| &v.name == name) {
                return Err(Error::Invalid {
                    path: self.path.clone(),
                    message: format!("--set {name}: the profile has no such variable"),
                });
            }
        }
        let value_of = |name: &str| -> Option<String> {
            if BUILTIN_VARIABLES.contains(&name) {
                return builtins.get(name).map(str::to_string);
            }
            let v = self.variables.iter().find(|v| v.name == name)?;
            set.get(name)
                .cloned()
                .or_else(|| env(name))
                .or_else(|| v.default.clone())
        };
        let mut out = Vec::new();
        for (key, template) in &self.assignments {
            let mut value = String::new();
            let mut unresolved = Vec::new();
            let mut rest = template.as_str();
            while let Some(start) = rest.find("${") {
                value.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let end = after.find('}').unwrap_or(after.len());
                let name = &after[..end];
                match value_of(name) {
                    Some(v) => value.push_str(&v),
                    None => {
                        value.push_str(&format!("${{{name}}}"));
                        unresolved.push(name.to_string());
                    }
                }
                rest = after.get(end + 1..).unwrap_or("");
            }
            value.push_str(rest);
            out.push(Shown {
                key: key.clone(),
                value,
                secret: None,
                unresolved,
            });
        }
        for s in &self.secrets {
            let present = env(&s.env).is_some_and(|v| !v.is_empty());
            out.push(Shown {
                key: s.key.clone(),
                value: crate::stack::secret::REDACTED.to_string(),
                secret: Some(SecretShown {
                    env: s.env.clone(),
                    present,
                }),
                unresolved: Vec::new(),
            });
        }
        // The write order: secrets before SecurityProfile, which comes last.
        let (last, mut first): (Vec<Shown>, Vec<Shown>) = out
            .into_iter()
            .partition(|k| super::workflow::WRITTEN_LAST.contains(&k.key.as_str()));
        first.extend(last);
        Ok(first)
    }

    /// Resolves without a command line or a prompt: declared variables from the environment,
    /// then their defaults; secrets from the environment. The TUI loads profiles this way.
    pub fn resolve_from_env(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<Assignment>> {
        let set: BTreeMap<String, String> = self
            .variables
            .iter()
            .filter_map(|v| env(&v.name).map(|value| (v.name.clone(), value)))
            .collect();
        self.resolve(&set, env, None)
    }
}

fn ocpp_field_name(key: &str) -> String {
    match key {
        "CsmsUrl" => "csms_url".into(),
        "ChargePointId" => "charge_point_id".into(),
        "BasicAuthPassword" => "basic_auth_password".into(),
        "SecurityProfile" => "security_profile".into(),
        other => other.into(),
    }
}

fn placeholders(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                out.push(after[..end].to_string());
                rest = &after[end + 1..];
            }
            None => {
                out.push(after.to_string());
                break;
            }
        }
    }
    out
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |i| offset - i - 1) + 1;
    (line, column)
}

/// Byte range of `key =` inside `[table]` (a plain scan; good enough for error positions).
fn find_key_span(text: &str, table: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let mut in_table = false;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_table = trimmed.trim_start_matches('[').trim_end_matches(']').trim() == table;
        } else if in_table {
            let name = trimmed
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"');
            if name == key && trimmed.contains('=') {
                let col = line
                    .find(trimmed.chars().next().unwrap_or(' '))
                    .unwrap_or(0);
                return Some(offset + col..offset + col + key.len());
            }
        }
        offset += line.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"name = "Example"
[variables]
CHARGE_POINT_ID = { description = "id" }
SITE = { default = "HQ" }
[ocpp]
csms_url = "ws://127.0.0.1:9000/ocpp"
charge_point_id = "${SITE}-${CHARGE_POINT_ID}"
security_profile = 1
authorization_key = { env = "EX_KEY" }
[config]
HeartbeatInterval = 300
LocalPreAuthorize = true
MeterValuesSampledData = ["Energy.Active.Import.Register", "Current.Import"]
"#;

    #[test]
    fn resolves_variables_and_secrets_in_order() {
        let p = ProvisioningProfile::parse(Path::new("good.toml"), GOOD).unwrap();
        let mut set = BTreeMap::new();
        set.insert("CHARGE_POINT_ID".to_string(), "CP7".to_string());
        let env =
            |name: &str| (name == "EX_KEY").then(|| "00112233445566778899aabbccddeeff".to_string());
        let out = p.resolve(&set, &env, None).unwrap();
        let keys: Vec<&str> = out.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "CsmsUrl",
                "ChargePointId",
                "HeartbeatInterval",
                "LocalPreAuthorize",
                "MeterValuesSampledData",
                "AuthorizationKey",
                "SecurityProfile"
            ]
        );
        assert_eq!(out[1].value.expose(), "HQ-CP7");
        assert_eq!(
            out[4].value.expose(),
            "Energy.Active.Import.Register,Current.Import"
        );
        assert_eq!(out[5].value.shown(), crate::stack::secret::REDACTED);
        assert!(!format!("{out:?}").contains("0011223344"));
    }

    #[test]
    fn missing_values_name_the_flag_or_env() {
        let p = ProvisioningProfile::parse(Path::new("good.toml"), GOOD).unwrap();
        let none = |_: &str| None;
        let e = p
            .resolve(&BTreeMap::new(), &none, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--set CHARGE_POINT_ID=VALUE"), "{e}");
        let mut set = BTreeMap::new();
        set.insert("CHARGE_POINT_ID".to_string(), "CP7".to_string());
        let e = p.resolve(&set, &none, None).unwrap_err().to_string();
        assert!(e.contains("export EX_KEY"), "{e}");
        set.insert("NOPE".to_string(), "x".to_string());
        let e = p.resolve(&set, &none, None).unwrap_err().to_string();
        assert!(e.contains("no such variable"), "{e}");
    }

    #[test]
    fn bad_profiles_report_line_and_column() {
        let cases = [
            (
                "[config]\nHeartbeatInterval = 300\nBlinkRepeat = 3\n",
                "bad.toml:3:1: unknown configuration key BlinkRepeat",
            ),
            (
                "[config]\nNumberOfConnectors = 2\n",
                "bad.toml:2:1: NumberOfConnectors is read-only",
            ),
            (
                "[ocpp]\nsecurity_profile = 2\n",
                "bad.toml:2:1: security_profile 2",
            ),
            (
                "[ocpp]\nsecurity_profile = 1\n",
                "bad.toml:2:1: security_profile 1 needs",
            ),
            (
                "[ocpp]\ncsms_url = \"ws://x/${NOPE}\"\n",
                "bad.toml:2:1: ${NOPE} is used but not declared",
            ),
            (
                "name = \"x\"\nbogus = 1\n",
                "bad.toml:2:1: unknown field `bogus`",
            ),
            ("[config]\nHeartbeatInterval = \n", "bad.toml:2:"),
        ];
        for (text, expected) in cases {
            let e = ProvisioningProfile::parse(Path::new("bad.toml"), text)
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(expected),
                "got {e:?}, expected prefix {expected:?}"
            );
        }
    }

    #[test]
    fn commissioning_expectations_parse_and_bad_tags_name_line_and_column() {
        let text = "[commissioning]\naccepted_id_tags = [\"04A2\", \"B7\", \"04A2\"]\nremote_start = true\n";
        let p = ProvisioningProfile::parse(Path::new("c.toml"), text).unwrap();
        assert_eq!(
            p.commissioning,
            Some(Commissioning {
                accepted_id_tags: vec!["04A2".into(), "B7".into()],
                remote_start: Some(true),
            })
        );
        let p = ProvisioningProfile::parse(Path::new("c.toml"), GOOD).unwrap();
        assert_eq!(p.commissioning, None);
        let e = ProvisioningProfile::parse(
            Path::new("c.toml"),
            "[commissioning]\naccepted_id_tags = [\"\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("c.toml:2:21: accepted_id_tags"), "{e}");
        let e = ProvisioningProfile::parse(Path::new("c.toml"), "[commissioning]\nremote = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.toml:2:1: unknown field `remote`"), "{e}");
    }

    #[test]
    fn built_in_variables_come_from_the_charger_and_cannot_be_declared_or_set() {
        let text = "[ocpp]\ncharge_point_id = \"GARAGE7-${SERIAL}\"\ncsms_url = \"ws://h/${MODEL}/${FIRMWARE}\"\n";
        let p = ProvisioningProfile::parse(Path::new("site.toml"), text).unwrap();
        assert_eq!(p.builtins_used(), ["MODEL", "FIRMWARE", "SERIAL"]);
        let none = |_: &str| None;
        let out = p
            .resolve_for(
                &Builtins::of("ZAP042", "Go", "2.1"),
                &BTreeMap::new(),
                &none,
                None,
            )
            .unwrap();
        let values: Vec<&str> = out.iter().map(|a| a.value.expose()).collect();
        assert_eq!(values, ["ws://h/Go/2.1", "GARAGE7-ZAP042"]);
        let e = p
            .resolve(&BTreeMap::new(), &none, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("${MODEL} is filled from the charger"), "{e}");
        let mut set = BTreeMap::new();
        set.insert("SERIAL".to_string(), "X".to_string());
        let e = p
            .resolve_for(&Builtins::default(), &set, &none, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--set SERIAL"), "{e}");
        let e = ProvisioningProfile::parse(
            Path::new("site.toml"),
            "[variables]\nSERIAL = { default = \"x\" }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("site.toml:2:1: SERIAL is filled from the charger"),
            "{e}"
        );
        let shown = p
            .preview(&Builtins::default(), &BTreeMap::new(), &none)
            .unwrap();
        assert_eq!(shown[1].value, "GARAGE7-${SERIAL}");
        assert_eq!(shown[1].unresolved, ["SERIAL"]);
    }

    #[test]
    fn check_values_names_the_line_of_a_value_the_charger_refuses() {
        let text = "[ocpp]\ncsms_url = \"ws://h/ocpp\"\n[config]\nHeartbeatInterval = 300\nMeterValueSampleInterval = -5\n";
        let p = ProvisioningProfile::parse(Path::new("v.toml"), text).unwrap();
        let errors: Vec<String> = p.check_values(text).iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("v.toml:5:1: MeterValueSampleInterval"),
            "{errors:?}"
        );
    }

    #[test]
    fn shipped_profiles_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                ProvisioningProfile::load(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 2, "shipped profiles: {n}");
    }
}
