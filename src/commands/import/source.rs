//! Where an import reads: the files of a [`Source`], each read whole, and
//! the server entries found in them (their spans in the text, checked and
//! classified: stdio, remote, or already through `mcp-proxy`).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::{ImportError, ImportOptions, Source, internal};
use crate::claude::entries;
use crate::claude::files::{self, read_optional, strip_bom};
use crate::claude::json_text::{get, json_string, members, span_of};
use crate::claude::projects::{self, ProjectKeys};
use crate::config::strip_position;

/// Where in a file the servers are.
#[derive(Debug, Clone)]
pub(super) enum Where {
    /// The top-level `mcpServers`.
    Top,
    /// `projects[KEY].mcpServers`, the first of these keys present.
    Project(ProjectKeys),
}

#[derive(Debug, Clone)]
pub(super) struct Place {
    pub(super) at: Where,
    /// The project these servers belong to (scope `project`).
    pub(super) project: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub(crate) struct PlannedFile {
    pub(crate) path: PathBuf,
    /// An error when missing (otherwise skipped).
    required: bool,
    places: Vec<Place>,
}

pub(crate) fn plan_sources(options: &ImportOptions) -> Vec<PlannedFile> {
    match &options.source {
        Source::ClaudeCode { project } => {
            let claude_json = files::user_config(&options.user_home);
            let mut places = vec![Place {
                at: Where::Top,
                project: None,
            }];
            let mut plan = Vec::new();
            let mut project_file = None;
            if let Some(dir) = project {
                let dir = projects::absolute(dir);
                places.push(Place {
                    at: Where::Project(ProjectKeys::of(&dir)),
                    project: Some(dir.clone()),
                });
                project_file = Some(PlannedFile {
                    path: files::project_config(&dir),
                    required: false,
                    places: vec![Place {
                        at: Where::Top,
                        project: Some(dir),
                    }],
                });
            }
            plan.push(PlannedFile {
                path: claude_json,
                required: false,
                places,
            });
            plan.extend(project_file);
            plan
        }
        Source::ClaudeDesktop => vec![PlannedFile {
            path: files::desktop_config(&options.user_home),
            required: true,
            places: vec![Place {
                at: Where::Top,
                project: None,
            }],
        }],
        Source::File(path) => {
            let project = files::is_project_config(path)
                .then(|| projects::absolute(path))
                .and_then(|p| p.parent().map(Path::to_owned));
            vec![PlannedFile {
                path: path.clone(),
                required: true,
                places: vec![Place {
                    at: Where::Top,
                    project,
                }],
            }]
        }
    }
}

/// A source file, read.
pub(super) struct Loaded {
    pub(super) path: PathBuf,
    pub(super) text: String,
    /// A named file (`--from`): it must have an `mcpServers` object.
    pub(super) required: bool,
    pub(super) places: Vec<Place>,
}

impl Loaded {
    /// A project's `.mcp.json` (most often committed to its repository).
    pub(super) fn is_project_file(&self) -> bool {
        files::is_project_config(&self.path)
    }
}

pub(super) fn load_sources(
    options: &ImportOptions,
    config_path: &Path,
) -> Result<Vec<Loaded>, ImportError> {
    let plan = plan_sources(options);
    let own = config_path.canonicalize().ok();
    let mut files = Vec::new();
    for planned in &plan {
        let Some(bytes) = read_optional(&planned.path)? else {
            if planned.required {
                return Err(ImportError::Missing {
                    path: planned.path.clone(),
                });
            }
            continue;
        };
        if own.is_some() && planned.path.canonicalize().ok() == own {
            return Err(ImportError::OwnConfig {
                path: planned.path.clone(),
            });
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            let column =
                valid.len() - valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
            ImportError::NotJson {
                path: planned.path.clone(),
                message: "not UTF-8 text".into(),
                line,
                column,
            }
        })?;
        files.push(Loaded {
            path: planned.path.clone(),
            text,
            required: planned.required,
            places: planned.places.clone(),
        });
    }
    if files.is_empty() {
        return Err(ImportError::NoSource {
            looked: plan.into_iter().map(|p| p.path).collect(),
        });
    }
    Ok(files)
}

/// One server entry found in a source file.
pub(super) struct Site<'t> {
    pub(super) file: usize,
    pub(super) place: String,
    pub(super) project: Option<PathBuf>,
    pub(super) name: String,
    /// The keys from the file's top to the entry: `["mcpServers", NAME]` or
    /// `["projects", KEY, "mcpServers", NAME]`.
    pub(super) at: Vec<String>,
    /// The entry's value, in the file's text.
    pub(super) span: Range<usize>,
    pub(super) entry: Entry<'t>,
}

impl Site<'_> {
    pub(super) fn describe(&self, files: &[Loaded]) -> String {
        format!("{} ({})", files[self.file].path.display(), self.place)
    }
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    /// It runs `mcp-proxy` already.
    Imported {
        target: Option<String>,
    },
    Stdio,
    Remote,
}

/// The typed view of an entry, for checking (its text is copied, not this).
#[derive(Debug, Default, Deserialize)]
pub(super) struct Shape {
    pub(super) command: Option<String>,
    pub(super) args: Option<Vec<String>>,
    #[expect(dead_code, reason = "read to check its type; the text is copied")]
    env: Option<BTreeMap<String, String>>,
    #[expect(dead_code, reason = "read to check its type; the text is copied")]
    cwd: Option<String>,
    #[serde(rename = "type")]
    pub(super) kind: Option<String>,
    pub(super) url: Option<String>,
    #[expect(dead_code, reason = "read to check its type; the text is copied")]
    headers: Option<BTreeMap<String, String>>,
}

pub(super) struct Entry<'t> {
    pub(super) members: Vec<(String, &'t RawValue)>,
    /// For comparing entries of the same name.
    pub(super) value: Value,
    pub(super) shape: Shape,
    pub(super) kind: Kind,
    pub(super) had_type: bool,
}

impl<'t> Entry<'t> {
    /// The `${VAR}`s its `env` values and `args` use, by name, sorted.
    pub(super) fn shell_vars(&self) -> Vec<String> {
        let env = self.value.get("env").and_then(Value::as_object);
        let args = self.value.get("args").and_then(Value::as_array);
        let texts = env
            .into_iter()
            .flat_map(|env| env.values())
            .chain(args.into_iter().flatten())
            .filter_map(Value::as_str);
        let mut names = BTreeSet::new();
        for text in texts {
            let mut rest = text;
            while let Some(start) = rest.find("${") {
                rest = &rest[start + 2..];
                let Some(end) = rest.find('}') else { break };
                let name = rest[..end].split(":-").next().unwrap_or_default();
                if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    names.insert(name.to_owned());
                }
                rest = &rest[end + 1..];
            }
        }
        names.into_iter().collect()
    }

    /// The raw text of `key`, if present and not `null`.
    pub(super) fn raw(&self, key: &str) -> Option<&'t RawValue> {
        get(&self.members, key).filter(|raw| raw.get() != "null")
    }
}

pub(super) fn find_servers<'t>(
    index: usize,
    file: &'t Loaded,
    notes: &mut Vec<String>,
) -> Result<Vec<Site<'t>>, ImportError> {
    let path = &file.path;
    let body = strip_bom(&file.text);
    let top = members(body).map_err(|e| {
        if e.is_data() {
            ImportError::NotAnObject {
                path: path.clone(),
                key: "the top level".into(),
            }
        } else {
            ImportError::NotJson {
                path: path.clone(),
                message: strip_position(&e.to_string()),
                line: e.line(),
                column: e.column(),
            }
        }
    })?;
    let object = |raw: &'t RawValue, key: &str| {
        members(raw.get()).map_err(|_| ImportError::NotAnObject {
            path: path.clone(),
            key: key.to_owned(),
        })
    };
    let mut sites = Vec::new();
    let mut any = false;
    for place in &file.places {
        let mut at = Vec::new();
        let (label, servers) = match &place.at {
            Where::Top => ("mcpServers".to_owned(), get(&top, "mcpServers")),
            Where::Project(keys) => {
                let projects = match get(&top, "projects") {
                    Some(projects) => object(projects, "projects")?,
                    None => Vec::new(),
                };
                let found = keys.find(|key| get(&projects, key));
                let Some((key, project)) = found else {
                    if let Some(dir) = &place.project {
                        notes.push(format!(
                            "{} has no servers of its own for {} (no projects entry)",
                            path.display(),
                            dir.display()
                        ));
                    }
                    continue;
                };
                let label = format!("projects[{}]", json_string(key));
                at = vec!["projects".to_owned(), key.to_owned()];
                let project = object(project, &label)?;
                (format!("{label}.mcpServers"), get(&project, "mcpServers"))
            }
        };
        let Some(servers) = servers else {
            continue;
        };
        any = true;
        for (name, raw) in object(servers, &label)? {
            let span = span_of(&file.text, raw.get()).map_err(internal)?;
            let entry = read_entry(path, &name, raw)?;
            let unknown: Vec<&str> = entry
                .members
                .iter()
                .map(|(k, _)| k.as_str())
                .filter(|k| !known_key(&entry.kind, k))
                .collect();
            if !unknown.is_empty() {
                notes.push(format!(
                    "{name}: not carried over to config.json: {}",
                    unknown.join(", ")
                ));
            }
            if !matches!(entry.kind, Kind::Imported { .. }) && !is_valid_name(&name) {
                return Err(ImportError::BadName {
                    path: path.clone(),
                    name,
                });
            }
            let mut at = at.clone();
            at.extend(["mcpServers".to_owned(), name.clone()]);
            sites.push(Site {
                file: index,
                place: label.clone(),
                project: place.project.clone(),
                at,
                name,
                span,
                entry,
            });
        }
    }
    if !any && file.required {
        return Err(ImportError::NoServers { path: path.clone() });
    }
    Ok(sites)
}

fn known_key(kind: &Kind, key: &str) -> bool {
    match kind {
        Kind::Imported { .. } => true,
        Kind::Stdio => matches!(key, "type" | "command" | "args" | "env" | "cwd"),
        Kind::Remote => matches!(key, "type" | "url" | "headers"),
    }
}

fn read_entry<'t>(path: &Path, name: &str, raw: &'t RawValue) -> Result<Entry<'t>, ImportError> {
    let bad = |problem: String| ImportError::BadEntry {
        path: path.to_owned(),
        name: name.to_owned(),
        problem,
    };
    let members = members(raw.get()).map_err(|_| bad("is not a JSON object".into()))?;
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    let shape: Shape = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let key = e.path().to_string();
        // Never echo a value of env or headers: it may be a secret.
        if key.starts_with("env") || key.starts_with("headers") {
            bad(format!("`{key}`: every value must be a string"))
        } else {
            bad(format!(
                "`{key}`: {}",
                strip_position(&e.into_inner().to_string())
            ))
        }
    })?;
    let value: Value =
        serde_json::from_str(raw.get()).map_err(|e| ImportError::Internal(e.to_string()))?;
    let had_type = get(&members, "type").is_some();
    let kind = match (&shape.command, shape.kind.as_deref(), &shape.url) {
        (Some(command), _, _) if entries::is_proxy(command) => Kind::Imported {
            target: entries::target_of(shape.args.iter().flatten().map(String::as_str))
                .map(str::to_owned),
        },
        (Some(_), None | Some("stdio"), None) => Kind::Stdio,
        (None, Some("stdio"), _) => {
            return Err(bad(
                "has \"type\": \"stdio\" but no \"command\"; add the command to run".into(),
            ));
        }
        (Some(_), None, Some(_)) => {
            return Err(bad(
                "has both a \"command\" and a \"url\"; keep the one it uses (or add \"type\")"
                    .into(),
            ));
        }
        (Some(_), Some("stdio"), Some(_)) => Kind::Stdio,
        (_, Some("http" | "sse" | "streamable-http" | "streamableHttp"), None) => {
            return Err(bad(format!(
                "has \"type\": {:?} but no \"url\"; add the server's URL",
                shape.kind.as_deref().unwrap_or_default()
            )));
        }
        (_, None | Some("http" | "sse" | "streamable-http" | "streamableHttp"), Some(_)) => {
            Kind::Remote
        }
        (_, Some(other), _) => {
            return Err(bad(format!(
                "unknown \"type\": {other:?}; use \"stdio\", \"http\" or \"sse\""
            )));
        }
        (None, None, None) => {
            return Err(ImportError::MissingCommandOrUrl {
                path: path.to_owned(),
                name: name.to_owned(),
            });
        }
    };
    Ok(Entry {
        members,
        value,
        shape,
        kind,
        had_type,
    })
}

/// The config's rule for names (they name lock and log files).
fn is_valid_name(name: &str) -> bool {
    crate::config::is_valid_name(name)
}

pub(super) fn check_scope_names(
    options: &ImportOptions,
    sites: &[Site<'_>],
) -> Result<(), ImportError> {
    for name in options.scopes.keys() {
        if !sites.iter().any(|s| s.name == *name) {
            let found: BTreeSet<String> = sites.iter().map(|s| s.name.clone()).collect();
            return Err(ImportError::UnknownScopeName {
                name: name.clone(),
                found: found.into_iter().collect(),
            });
        }
    }
    Ok(())
}
