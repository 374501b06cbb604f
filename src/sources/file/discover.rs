//! Which files a source reads: the configured globs expanded (symlinks
//! followed), excludes removed, one path per file. Also which directories
//! to watch so that a new or renamed file is noticed at once. This module
//! only looks; it opens nothing and keeps no state.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use glob::{MatchOptions, Pattern};
use tracing::debug;

/// `*` stops at `/`, as in a shell; `**` crosses directories.
const MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// A regular file matched by the globs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The path that matched (a symlink stays the symlink's path).
    pub path: PathBuf,
    /// Device of the file (the target of a symlink).
    pub dev: u64,
    /// Inode of the file.
    pub ino: u64,
}

/// Every regular file matching one of `paths` and none of `exclude`, in
/// pattern order and then path order; a file reachable by several paths
/// (a symlink and its target) is listed once, under its first path.
pub fn scan(paths: &[Pattern], exclude: &[Pattern]) -> Vec<Found> {
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    for pattern in paths {
        let entries = match glob::glob_with(pattern.as_str(), MATCH) {
            Ok(entries) => entries,
            Err(e) => {
                // Patterns were checked at load; this cannot happen, and
                // if it did the source carries on with its other globs.
                debug!(pattern = pattern.as_str(), error = %e, "FileGlobInvalid");
                continue;
            }
        };
        for entry in entries {
            // An unreadable directory is skipped: herald may not be allowed
            // to read everything a broad glob reaches.
            let Ok(path) = entry else { continue };
            if exclude.iter().any(|x| x.matches_path_with(&path, MATCH)) {
                continue;
            }
            // `metadata` follows symlinks: the file read is the target.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() || !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            found.push(Found {
                path,
                dev: meta.dev(),
                ino: meta.ino(),
            });
        }
    }
    found
}

/// Whether `path` is one the globs select: it matches one of `paths` and
/// none of `exclude` (its file need not exist).
pub fn matches(paths: &[Pattern], exclude: &[Pattern], path: &Path) -> bool {
    paths.iter().any(|p| p.matches_path_with(path, MATCH))
        && !exclude.iter().any(|x| x.matches_path_with(path, MATCH))
}

/// A directory to watch for a pattern, and whether to watch below it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Root {
    /// The deepest directory of the pattern without wildcards.
    pub dir: PathBuf,
    /// Whether a wildcard appears in a directory part of the pattern.
    pub recursive: bool,
}

/// The directories whose changes can change what `pattern` matches.
pub fn root(pattern: &Pattern) -> Root {
    let path = Path::new(pattern.as_str());
    let mut dir = PathBuf::new();
    let components: Vec<Component<'_>> = path.components().collect();
    let last = components.len().saturating_sub(1);
    for (i, component) in components.iter().enumerate() {
        let text = component.as_os_str().to_string_lossy();
        let wild = text.contains(['*', '?', '[']);
        if i == last && !wild {
            // A literal file name: its parent is where it appears.
            return Root {
                dir,
                recursive: false,
            };
        }
        if wild {
            return Root {
                dir,
                recursive: i != last,
            };
        }
        dir.push(component);
    }
    Root {
        dir,
        recursive: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn pattern(p: &str) -> Pattern {
        Pattern::new(p).expect("pattern")
    }

    #[test]
    fn roots_are_the_literal_prefix() {
        let r = root(&pattern("/var/log/app/*.log"));
        assert_eq!(r.dir, PathBuf::from("/var/log/app"));
        assert!(!r.recursive);
        let r = root(&pattern("/var/log/**/x.log"));
        assert_eq!(r.dir, PathBuf::from("/var/log"));
        assert!(r.recursive);
        let r = root(&pattern("/var/log/syslog"));
        assert_eq!(r.dir, PathBuf::from("/var/log"));
    }

    #[test]
    fn scans_follow_symlinks_and_list_each_file_once() {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        std::fs::write(d.join("a.log"), b"a").expect("write");
        std::fs::write(d.join("b.log"), b"b").expect("write");
        std::fs::write(d.join("skip.log"), b"s").expect("write");
        std::fs::create_dir(d.join("sub.log")).expect("dir");
        symlink(d.join("a.log"), d.join("link.log")).expect("symlink");
        let found = scan(
            &[pattern(&format!("{}/*.log", d.display()))],
            &[pattern(&format!("{}/skip*", d.display()))],
        );
        let names: Vec<String> = found
            .iter()
            .map(|f| {
                f.path
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["a.log", "b.log"], "the link is a.log again");
    }
}
