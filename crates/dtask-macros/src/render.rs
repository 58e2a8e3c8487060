//! Renders a condition's tokens as compact Rust text
//! (`extract_metadata.height > 1080`, not the `extract_metadata . height`
//! of `TokenStream::to_string`), for the definition and the audit trail.

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use syn::Member;

/// A field name or tuple index as written.
pub(crate) fn member(member: &Member) -> String {
    match member {
        Member::Named(ident) => ident.to_string(),
        Member::Unnamed(index) => index.index.to_string(),
    }
}

/// The tokens as text, spaced as rustfmt would for simple expressions.
pub(crate) fn tokens(stream: TokenStream) -> String {
    let mut writer = Writer {
        text: String::new(),
        prev: Prev::Start,
        closure_params: false,
    };
    writer.stream(stream);
    writer.text
}

/// What was written last, which decides the space before the next token.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Prev {
    Start,
    Open,
    /// An identifier or a literal.
    Word,
    /// A keyword that a group may follow (`if (a)`).
    Keyword,
    /// A closing delimiter, `?`, or a macro's `!`.
    Close,
    /// `.`, `..`, `::`: nothing around it.
    Glue,
    /// `,`, `;`, `:`: a space after.
    Comma,
    /// A binary operator: spaces around.
    Op,
    /// A prefix operator: nothing after.
    Unary,
}

struct Writer {
    text: String,
    prev: Prev,
    /// Between the pipes of a closure's parameters.
    closure_params: bool,
}

impl Writer {
    fn stream(&mut self, stream: TokenStream) {
        let mut tokens = stream.into_iter().peekable();
        while let Some(token) = tokens.next() {
            match token {
                TokenTree::Ident(ident) => {
                    let text = ident.to_string();
                    self.word(&text);
                    if matches!(
                        text.as_str(),
                        "if" | "match" | "in" | "as" | "else" | "let" | "return" | "move"
                    ) {
                        self.prev = Prev::Keyword;
                    }
                }
                TokenTree::Literal(literal) => self.word(&literal.to_string()),
                TokenTree::Group(group) => self.group(group.delimiter(), group.stream()),
                TokenTree::Punct(punct) => {
                    let mut op = punct.as_char().to_string();
                    let mut spacing = punct.spacing();
                    while spacing == Spacing::Joint {
                        match tokens.peek() {
                            Some(TokenTree::Punct(next)) => {
                                op.push(next.as_char());
                                spacing = next.spacing();
                                tokens.next();
                            }
                            _ => break,
                        }
                    }
                    self.punct(&op);
                }
            }
        }
    }

    fn space_unless(&mut self, tight: &[Prev]) {
        if !tight.contains(&self.prev) {
            self.text.push(' ');
        }
    }

    fn word(&mut self, text: &str) {
        self.space_unless(&[Prev::Start, Prev::Open, Prev::Glue, Prev::Unary]);
        self.text.push_str(text);
        self.prev = Prev::Word;
    }

    fn group(&mut self, delimiter: Delimiter, inner: TokenStream) {
        let (open, close) = match delimiter {
            Delimiter::Parenthesis => ("(", ")"),
            Delimiter::Bracket => ("[", "]"),
            Delimiter::Brace => ("{ ", " }"),
            Delimiter::None => ("", ""),
        };
        let attached = delimiter != Delimiter::Brace && matches!(self.prev, Prev::Word | Prev::Close);
        if !attached {
            self.space_unless(&[Prev::Start, Prev::Open, Prev::Glue, Prev::Unary]);
        }
        self.text.push_str(open);
        self.prev = Prev::Open;
        self.stream(inner);
        self.text.push_str(close);
        self.prev = Prev::Close;
    }

    fn punct(&mut self, op: &str) {
        let operand_expected = matches!(
            self.prev,
            Prev::Start | Prev::Open | Prev::Comma | Prev::Op | Prev::Unary | Prev::Keyword
        );
        match op {
            "|" if self.closure_params => {
                self.text.push('|');
                self.closure_params = false;
                self.prev = Prev::Op;
            }
            "|" | "||" if operand_expected => {
                self.space_unless(&[Prev::Start, Prev::Open, Prev::Unary]);
                self.text.push_str(op);
                self.closure_params = op == "|";
                self.prev = if op == "|" { Prev::Unary } else { Prev::Op };
            }
            "." | ".." | "..=" | "::" => {
                self.text.push_str(op);
                self.prev = Prev::Glue;
            }
            "," | ";" | ":" => {
                self.text.push_str(op);
                self.prev = Prev::Comma;
            }
            "?" => {
                self.text.push_str(op);
                self.prev = Prev::Close;
            }
            "!" if self.prev == Prev::Word => {
                self.text.push('!');
                self.prev = Prev::Close;
            }
            "!" | "-" | "*" | "&" | "&&" if operand_expected => {
                self.space_unless(&[Prev::Start, Prev::Open, Prev::Unary]);
                self.text.push_str(op);
                self.prev = Prev::Unary;
            }
            _ => {
                self.space_unless(&[Prev::Start, Prev::Open]);
                self.text.push_str(op);
                self.prev = Prev::Op;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::tokens;

    #[test]
    fn renders_like_written() {
        let cases = [
            (quote!(extract_metadata.height > 1080), "extract_metadata.height > 1080"),
            (
                quote!(request.quality == Quality::High && !request.skip),
                "request.quality == Quality::High && !request.skip",
            ),
            (quote!(request.name.len() >= 3), "request.name.len() >= 3"),
            (quote!(a.b[0] != -1), "a.b[0] != -1"),
            (
                quote!(f(a, &b) || matches!(x, Some(_))),
                "f(a, &b) || matches!(x, Some(_))",
            ),
            (quote!((a + b) * c), "(a + b) * c"),
            (
                quote!(items.iter().any(|x| x.size > 10)),
                "items.iter().any(|x| x.size > 10)",
            ),
            (quote!(a.map(|(x, y)| x | y)), "a.map(|(x, y)| x | y)"),
            (
                quote!(f(|| true) || g(move |x: u8| x > 1)),
                "f(|| true) || g(move |x: u8| x > 1)",
            ),
        ];
        for (stream, expected) in cases {
            assert_eq!(tokens(stream), expected);
        }
    }
}
