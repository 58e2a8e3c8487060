//! Names: the snake_case form of a step name, and "did you mean" hints.

use heck::ToSnakeCase;
use proc_macro2::Ident;
use syn::Expr;

/// The snake_case form of a PascalCase step name, spanned like it:
/// `CreateZipArchive` → `create_zip_archive`. Data references (inputs,
/// sources, conditions) and generated fields and methods use it.
/// Names that would not make a valid identifier in snake_case (`_1`)
/// keep their lower-case form; the PascalCase check rejects them anyway.
pub(crate) fn snake(name: &Ident) -> Ident {
    let text = name.to_string();
    let snake = text.to_snake_case();
    let valid = snake.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') && snake != "_";
    let snake = if valid { snake } else { text.to_lowercase() };
    Ident::new(&snake, name.span())
}

/// Whether `word` is a Rust keyword, which cannot name a field or method.
pub(crate) fn is_keyword(word: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate", "do", "dyn",
        "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "macro",
        "match", "mod", "move", "mut", "override", "priv", "pub", "ref", "return", "self", "static", "struct", "super",
        "trait", "true", "try", "type", "typeof", "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
    ];
    KEYWORDS.contains(&word)
}

/// The identifier `expr` is, when it is one.
pub(crate) fn single_ident(expr: &Expr) -> Option<&Ident> {
    match expr {
        Expr::Path(path) if path.qself.is_none() && path.attrs.is_empty() => path.path.get_ident(),
        _ => None,
    }
}

/// ` (did you mean `x`?)` when one of `candidates` is close to `wrong`
/// (the same ignoring case, or at most two edits away), `""` otherwise.
pub(crate) fn did_you_mean<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    let lower = wrong.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| *c != wrong)
        .map(|c| {
            let distance = if c.to_lowercase() == lower {
                0
            } else {
                edit_distance(wrong, c)
            };
            (distance, c)
        })
        .filter(|(distance, c)| *distance <= 2 && (*distance < c.len().max(wrong.len()) / 2 + 1))
        .min_by_key(|(distance, _)| *distance)
        .map_or_else(String::new, |(_, c)| format!(" (did you mean `{c}`?)"))
}

/// The Levenshtein distance between `a` and `b`, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn hints_only_close_names() {
        let names = ["CreateZipArchive", "UploadZip"];
        assert_eq!(
            did_you_mean("CreateZipArchve", names),
            " (did you mean `CreateZipArchive`?)"
        );
        assert_eq!(did_you_mean("uploadzip", names), " (did you mean `UploadZip`?)");
        assert_eq!(did_you_mean("Transcode", names), "");
        assert_eq!(did_you_mean("ab", ["xy"]), "");
    }

    #[test]
    fn snake_names() {
        let name = Ident::new("CreateZipArchive", proc_macro2::Span::call_site());
        assert_eq!(snake(&name).to_string(), "create_zip_archive");
    }
}
