//! The import graph of a crate, read from its sources: which file refers to
//! which, through `crate::`, `super::` and `self::` paths, with re-exports
//! (`pub use`) followed to the file that defines the item.
//!
//! Files declared only for tests (`#[cfg(test)] mod x;`) and `#[cfg(test)]`
//! items are left out: tests may reach anywhere. Paths in comments are not
//! imports (the tokenizer drops comments; doc comments are string
//! literals). A child module named by a relative path from its parent
//! (`use worker::run_queue;` in `host/mod.rs`) is the parent's own structure,
//! not an import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{Delimiter, TokenStream, TokenTree};

/// A module path from the crate root (`["host", "worker"]`).
pub(crate) type ModPath = Vec<String>;

/// One source file of the crate.
#[derive(Debug)]
pub(crate) struct SourceFile {
    /// Its path relative to `src/`.
    pub(crate) path: String,
    tokens: Vec<TokenTree>,
}

/// The files of a crate and what each imports.
#[derive(Debug)]
pub(crate) struct Crate {
    /// Every module file, by module path.
    pub(crate) files: BTreeMap<ModPath, SourceFile>,
    /// `(module, exported name) -> absolute target path` of every `pub use`.
    reexports: BTreeMap<(ModPath, String), ModPath>,
}

impl Crate {
    /// Reads the crate whose `src/lib.rs` is under `root`, following `mod`
    /// declarations from it.
    pub(crate) fn read(root: &Path) -> Self {
        let mut files = BTreeMap::new();
        let mut pending: Vec<(ModPath, PathBuf)> = vec![(Vec::new(), root.join("src/lib.rs"))];
        while let Some((module, file)) = pending.pop() {
            let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let tokens: TokenStream = text.parse().unwrap_or_else(|e| panic!("{}: {e:?}", file.display()));
            let tokens = without_test_items(tokens);
            let dir = if module.is_empty() || file.ends_with("mod.rs") {
                file.parent().unwrap().to_path_buf()
            } else {
                file.with_extension("")
            };
            for child in child_modules(&tokens) {
                let flat = dir.join(format!("{child}.rs"));
                let nested = dir.join(&child).join("mod.rs");
                let path = if flat.exists() { flat } else { nested };
                let mut child_path = module.clone();
                child_path.push(child);
                pending.push((child_path, path));
            }
            let path = file.strip_prefix(root.join("src")).unwrap().display().to_string();
            files.insert(module, SourceFile { path, tokens });
        }
        let mut krate = Self {
            files,
            reexports: BTreeMap::new(),
        };
        let mut reexports = BTreeMap::new();
        for (module, file) in &krate.files {
            for (name, target) in reexported(&file.tokens) {
                let target = krate.absolute(module, &target);
                reexports.insert((module.clone(), name), target);
            }
        }
        krate.reexports = reexports;
        krate
    }

    /// The files each file imports (never itself), by `src/`-relative path.
    pub(crate) fn imports(&self) -> BTreeMap<&str, BTreeSet<&str>> {
        let mut graph = BTreeMap::new();
        for (module, file) in &self.files {
            let mut targets = BTreeSet::new();
            for path in paths(&file.tokens) {
                if !matches!(path[0].as_str(), "crate" | "super" | "self") {
                    continue;
                }
                let absolute = self.absolute(module, &path);
                if let Some(target) = self.resolve(&absolute, 0)
                    && target.path != file.path
                {
                    targets.insert(target.path.as_str());
                }
            }
            graph.insert(file.path.as_str(), targets);
        }
        graph
    }

    /// `path` as seen from `module`, made absolute: `crate::`, `super::`
    /// and `self::` resolved, and a relative path that starts with a child
    /// module of `module` prefixed with it. External paths stay as they are
    /// (and resolve to nothing).
    fn absolute(&self, module: &ModPath, path: &[String]) -> ModPath {
        let mut base = module.clone();
        let mut rest = path;
        match path.first().map(String::as_str) {
            Some("crate") => {
                base.clear();
                rest = &path[1..];
            }
            Some("self") => rest = &path[1..],
            Some("super") => {
                while rest.first().map(String::as_str) == Some("super") {
                    base.pop();
                    rest = &rest[1..];
                }
            }
            Some(first) => {
                let mut child = module.clone();
                child.push(first.to_owned());
                if !self.files.contains_key(&child) {
                    // An external crate (or a name of the module's own).
                    return std::iter::once("::".to_owned()).chain(path.iter().cloned()).collect();
                }
            }
            None => {}
        }
        base.extend(rest.iter().cloned());
        base
    }

    /// The file defining what `path` names, following re-exports.
    fn resolve(&self, path: &ModPath, depth: usize) -> Option<&SourceFile> {
        if depth > 16 || path.first().map(String::as_str) == Some("::") {
            return None;
        }
        let module_len = (0..=path.len()).rev().find(|&n| self.files.contains_key(&path[..n]))?;
        let module = &path[..module_len];
        if let Some(name) = path.get(module_len)
            && let Some(target) = self.reexports.get(&(module.to_vec(), name.clone()))
        {
            let mut next = target.clone();
            next.extend(path[module_len + 1..].iter().cloned());
            // A re-export of an external crate's item is defined outside.
            return self.resolve(&next, depth + 1).or(None);
        }
        self.files.get(module)
    }
}

/// The tokens without `#[cfg(test)]` items.
fn without_test_items(tokens: TokenStream) -> Vec<TokenTree> {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if is_punct(&tokens[i], '#')
            && let Some(TokenTree::Group(attr)) = tokens.get(i + 1)
            && attr.delimiter() == Delimiter::Bracket
            && attr.stream().to_string().replace(' ', "") == "cfg(test)"
        {
            // Skip the item: up to its `;` or its body.
            i += 2;
            while i < tokens.len() {
                let end = is_punct(&tokens[i], ';')
                    || matches!(&tokens[i], TokenTree::Group(g) if g.delimiter() == Delimiter::Brace);
                i += 1;
                if end {
                    break;
                }
            }
            continue;
        }
        out.push(match &tokens[i] {
            TokenTree::Group(group) => {
                let inner: TokenStream = without_test_items(group.stream()).into_iter().collect();
                let mut copy = proc_macro2::Group::new(group.delimiter(), inner);
                copy.set_span(group.span());
                TokenTree::Group(copy)
            }
            other => other.clone(),
        });
        i += 1;
    }
    out
}

/// The names of `mod x;` declarations (not inline modules).
fn child_modules(tokens: &[TokenTree]) -> Vec<String> {
    let mut children = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if is_ident(token, "mod")
            && let Some(TokenTree::Ident(name)) = tokens.get(i + 1)
            && tokens.get(i + 2).is_some_and(|t| is_punct(t, ';'))
        {
            children.push(name.to_string());
        }
    }
    children
}

/// Every `pub use` (of any visibility) of the file: exported name and the
/// path it names, as written.
fn reexported(tokens: &[TokenTree]) -> Vec<(String, ModPath)> {
    let mut out = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if !is_ident(token, "pub") {
            continue;
        }
        let mut j = i + 1;
        if matches!(tokens.get(j), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis) {
            j += 1;
        }
        if !tokens.get(j).is_some_and(|t| is_ident(t, "use")) {
            continue;
        }
        let end = (j..tokens.len())
            .find(|&k| is_punct(&tokens[k], ';'))
            .unwrap_or(tokens.len());
        for (path, alias) in use_tree(&tokens[j + 1..end]) {
            let name = alias.unwrap_or_else(|| path.last().cloned().unwrap_or_default());
            if name != "*" && name != "self" {
                out.push((name, path));
            }
        }
    }
    out
}

/// Every path the tokens name: use trees and qualified paths, expanded.
fn paths(tokens: &[TokenTree]) -> Vec<ModPath> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if is_ident(&tokens[i], "use") {
            let end = (i..tokens.len())
                .find(|&k| is_punct(&tokens[k], ';'))
                .unwrap_or(tokens.len());
            out.extend(use_tree(&tokens[i + 1..end]).into_iter().map(|(path, _)| path));
            i = end + 1;
            continue;
        }
        if let TokenTree::Ident(ident) = &tokens[i]
            && is_path_sep(tokens, i + 1)
            && (i == 0 || !is_path_sep_end(tokens, i))
        {
            let mut path = vec![ident.to_string()];
            let mut k = i + 1;
            while is_path_sep(tokens, k) {
                match tokens.get(k + 2) {
                    Some(TokenTree::Ident(next)) => {
                        path.push(next.to_string());
                        k += 3;
                    }
                    _ => break,
                }
            }
            out.push(path);
            i = k;
            continue;
        }
        if let TokenTree::Group(group) = &tokens[i] {
            let inner: Vec<TokenTree> = group.stream().into_iter().collect();
            out.extend(paths(&inner));
        }
        i += 1;
    }
    out
}

/// Expands a use tree (`a::{b, c::d as e}`) into `(path, alias)` pairs.
fn use_tree(tokens: &[TokenTree]) -> Vec<(ModPath, Option<String>)> {
    let mut out = Vec::new();
    let mut prefix: ModPath = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            TokenTree::Ident(ident) if ident == "as" => {
                if let (Some(TokenTree::Ident(alias)), Some((path, slot))) = (tokens.get(i + 1), out.last_mut())
                    && *path == prefix
                {
                    *slot = Some(alias.to_string());
                }
                i += 2;
                continue;
            }
            TokenTree::Ident(ident) => {
                prefix.push(ident.to_string());
                if !is_path_sep(tokens, i + 1) {
                    out.push((prefix.clone(), None));
                }
            }
            TokenTree::Punct(p) if p.as_char() == '*' => out.push((with(&prefix, "*"), None)),
            TokenTree::Punct(p) if p.as_char() == ',' => {
                prefix.clear();
                i += 1;
                continue;
            }
            TokenTree::Group(group) if group.delimiter() == Delimiter::Brace => {
                let inner: Vec<TokenTree> = group.stream().into_iter().collect();
                for (path, alias) in use_tree(&inner) {
                    let mut full = prefix.clone();
                    if path.first().map(String::as_str) != Some("self") {
                        full.extend(path);
                    }
                    out.push((full, alias));
                }
                prefix.clear();
                i += 1;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

fn with(prefix: &[String], last: &str) -> ModPath {
    prefix.iter().cloned().chain(std::iter::once(last.to_owned())).collect()
}

fn is_path_sep(tokens: &[TokenTree], at: usize) -> bool {
    tokens.get(at).is_some_and(|t| is_punct(t, ':')) && tokens.get(at + 1).is_some_and(|t| is_punct(t, ':'))
}

/// Whether the ident at `at` follows a `::` (so it is not a path's start).
fn is_path_sep_end(tokens: &[TokenTree], at: usize) -> bool {
    at >= 2 && is_punct(&tokens[at - 1], ':') && is_punct(&tokens[at - 2], ':')
}

fn is_punct(token: &TokenTree, c: char) -> bool {
    matches!(token, TokenTree::Punct(p) if p.as_char() == c)
}

fn is_ident(token: &TokenTree, name: &str) -> bool {
    matches!(token, TokenTree::Ident(i) if i == name)
}

/// The cycles of `graph` (its strongly connected components of more than
/// one file), each sorted.
pub(crate) fn cycles<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<Vec<&'a str>> {
    // Tarjan's algorithm, iterative over the nodes, recursive over edges
    // (source trees are shallow).
    struct State<'a, 'g> {
        graph: &'g BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(s: &mut State<'a, '_>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in s.graph.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort_unstable();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for &v in graph.keys() {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.found
}
