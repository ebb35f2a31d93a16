//! The node tree of the test xenstored: values, permissions, children in
//! creation order (as C xenstored keeps them), and path canonicalisation.

use std::collections::BTreeMap;

/// Xenstore error names, sent back verbatim in XS_ERROR payloads.
pub type Errno = &'static str;

/// Where relative paths of the (dom0) connection resolve.
pub const DOM0_HOME: &str = "/local/domain/0";

#[derive(Debug, Clone)]
struct Node {
    value: Vec<u8>,
    perms: Vec<String>,
    children: Vec<String>,
}

/// A change to the tree, as logged by transactions and replayed on commit.
#[derive(Debug, Clone)]
pub enum Op {
    Write(String, Vec<u8>),
    Mkdir(String),
    Rm(String),
    SetPerms(String, Vec<String>),
}

/// What a successful [`Store::apply`] changed, for firing watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The node was created or modified.
    Node(String),
    /// The node and its whole subtree were removed.
    Removed(String),
}

/// A whole tree, keyed by absolute path.
#[derive(Debug, Clone)]
pub struct Store {
    nodes: BTreeMap<String, Node>,
}

impl Default for Store {
    fn default() -> Self {
        let root = Node {
            value: Vec::new(),
            perms: vec!["n0".to_string()],
            children: Vec::new(),
        };
        Store {
            nodes: BTreeMap::from([("/".to_string(), root)]),
        }
    }
}

/// Resolves `path` to an absolute node path: relative paths hang off
/// [`DOM0_HOME`]; empty components, a trailing '/' and characters outside
/// `[A-Za-z0-9-/_@]` are `EINVAL`, as in xenstored.
pub fn canonicalize(path: &str) -> Result<String, Errno> {
    let abs = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{DOM0_HOME}/{path}")
    };
    let valid_chars = abs
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-/_@".contains(c));
    let bad_shape = path.is_empty() || abs.contains("//") || (abs.len() > 1 && abs.ends_with('/'));
    if !valid_chars || bad_shape {
        return Err("EINVAL");
    }
    Ok(abs)
}

/// Parent of an absolute, canonical, non-root path.
fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => "/",
    }
}

fn base_name(path: &str) -> &str {
    &path[path.rfind('/').map_or(0, |i| i + 1)..]
}

impl Store {
    /// The node's value.
    pub fn read(&self, path: &str) -> Result<&[u8], Errno> {
        self.node(path).map(|n| n.value.as_slice())
    }

    /// The node's children, in creation order.
    pub fn directory(&self, path: &str) -> Result<&[String], Errno> {
        self.node(path).map(|n| n.children.as_slice())
    }

    /// The node's permission strings (e.g. `["n0"]`).
    pub fn perms(&self, path: &str) -> Result<&[String], Errno> {
        self.node(path).map(|n| n.perms.as_slice())
    }

    /// Applies one change; `Ok(None)` when it changed nothing (rm of an absent
    /// node whose parent exists, mkdir of an existing node).
    pub fn apply(&mut self, op: &Op) -> Result<Option<Change>, Errno> {
        match op {
            Op::Write(path, value) => {
                self.create(path);
                self.nodes.get_mut(path).unwrap().value = value.clone();
                Ok(Some(Change::Node(path.clone())))
            }
            Op::Mkdir(path) if self.nodes.contains_key(path) => Ok(None),
            Op::Mkdir(path) => {
                self.create(path);
                Ok(Some(Change::Node(path.clone())))
            }
            Op::SetPerms(path, perms) => {
                self.nodes.get_mut(path).ok_or("ENOENT")?.perms = perms.clone();
                Ok(Some(Change::Node(path.clone())))
            }
            Op::Rm(path) => self.rm(path),
        }
    }

    fn node(&self, path: &str) -> Result<&Node, Errno> {
        self.nodes.get(path).ok_or("ENOENT")
    }

    /// Creates `path` and missing ancestors, each inheriting its parent's perms.
    fn create(&mut self, path: &str) {
        if self.nodes.contains_key(path) {
            return;
        }
        let parent = parent_of(path).to_string();
        self.create(&parent);
        let parent_node = self.nodes.get_mut(&parent).unwrap();
        parent_node.children.push(base_name(path).to_string());
        let node = Node {
            value: Vec::new(),
            perms: parent_node.perms.clone(),
            children: Vec::new(),
        };
        self.nodes.insert(path.to_string(), node);
    }

    fn rm(&mut self, path: &str) -> Result<Option<Change>, Errno> {
        if path == "/" {
            return Err("EINVAL");
        }
        if !self.nodes.contains_key(path) {
            // Like xenstored: removing an absent node is fine if its parent exists.
            return match self.nodes.contains_key(parent_of(path)) {
                true => Ok(None),
                false => Err("ENOENT"),
            };
        }
        let prefix = format!("{path}/");
        let doomed: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(&prefix))
            .cloned()
            .collect();
        for key in doomed {
            self.nodes.remove(&key);
        }
        self.nodes.remove(path);
        let name = base_name(path);
        let parent = self.nodes.get_mut(parent_of(path)).unwrap();
        parent.children.retain(|c| c != name);
        Ok(Some(Change::Removed(path.to_string())))
    }
}
