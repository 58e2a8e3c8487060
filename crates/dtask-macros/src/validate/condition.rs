//! A condition's expression: which data it reads (for a step's condition,
//! the request and steps that run strictly earlier; for a `#[depends_on]`
//! condition, the upstream's `response`), and which values to record when
//! it is evaluated.
//!
//! A lower-case identifier used as a value is a data reference: `request`,
//! an earlier step's snake_case name, or a name the expression binds itself
//! (closure parameters, `match` and `let` patterns). Anything else is an
//! error. Upper-case names (constants, variants), paths with `::` and
//! called functions are left to the compiler.
//!
//! Inside macro calls (`matches!(request.quality, Quality::High)`) the
//! tokens are scanned instead: data names and their field chains are read
//! and observed, and other names are left alone, since a macro may bind
//! them.

use std::collections::HashSet;

use proc_macro2::{Delimiter, Ident, Spacing, TokenStream, TokenTree};
use quote::quote;
use syn::visit::{self, Visit};
use syn::{Expr, ExprCall, ExprField, ExprPath, Member, PatIdent};

use super::scope::{Data, Scope};
use crate::checked::Condition;
use crate::errors::Errors;
use crate::model::StepDecl;
use crate::names::single_ident;
use crate::render;

/// The data a condition may read.
trait Roots {
    /// Whether `ident` names data here (a name met in a macro's tokens).
    fn names_data(&self, ident: &Ident) -> bool;

    /// Takes `ident`, a lower-case name used as a value, as a data root of
    /// the condition, or says why it cannot be one.
    fn accept(&mut self, ident: &Ident) -> syn::Result<()>;
}

/// A step's condition reads `request` and the steps that run before it.
struct StepRoots<'s, 'a> {
    scope: &'s Scope<'a>,
    reader: &'s StepDecl,
    reads_request: bool,
    reads: Vec<usize>,
}

impl Roots for StepRoots<'_, '_> {
    fn names_data(&self, ident: &Ident) -> bool {
        self.scope.data(ident).is_some()
    }

    fn accept(&mut self, ident: &Ident) -> syn::Result<()> {
        match self.scope.data(ident) {
            Some(Data::Request) => {
                self.reads_request = true;
                Ok(())
            }
            Some(Data::Step(producer)) => {
                self.scope.check_before(ident, producer, self.reader)?;
                if !self.reads.contains(&producer) {
                    self.reads.push(producer);
                }
                Ok(())
            }
            None => {
                let place = format!("the condition of `{}`", self.reader.name);
                Err(self.scope.unknown_data(ident, "step or value", &place))
            }
        }
    }
}

/// A dependency's condition reads `response`, the upstream task's.
struct ResponseRoot;

impl Roots for ResponseRoot {
    fn names_data(&self, ident: &Ident) -> bool {
        ident == "response"
    }

    fn accept(&mut self, ident: &Ident) -> syn::Result<()> {
        if ident == "response" {
            return Ok(());
        }
        Err(syn::Error::new(
            ident.span(),
            format!(
                "unknown value `{ident}` in a #[depends_on] condition: it reads `response`, the upstream task's response"
            ),
        ))
    }
}

/// Analyses the condition `expr` of step `reader`. Step indices in the
/// result are declaration indices.
pub(crate) fn analyse(scope: &Scope<'_>, reader: &StepDecl, expr: &Expr, errors: &mut Errors) -> Option<Condition> {
    let mut roots = StepRoots {
        scope,
        reader,
        reads_request: false,
        reads: Vec::new(),
    };
    let mut condition = analyse_with(&mut roots, expr, errors)?;
    condition.reads_request = roots.reads_request;
    condition.reads = roots.reads;
    Some(condition)
}

/// Analyses the condition of a `#[depends_on]` edge, which reads
/// `response`.
pub(crate) fn analyse_dependency(expr: &Expr, errors: &mut Errors) -> Option<Condition> {
    analyse_with(&mut ResponseRoot, expr, errors)
}

fn analyse_with(roots: &mut dyn Roots, expr: &Expr, errors: &mut Errors) -> Option<Condition> {
    let mut locals = Locals::default();
    locals.visit_expr(expr);
    let mut analysis = Analysis {
        roots,
        locals: locals.0,
        errors: Errors::default(),
        condition: Condition {
            expr: expr.clone(),
            text: render::tokens(quote!(#expr)),
            reads_request: false,
            reads: Vec::new(),
            observed: Vec::new(),
        },
    };
    analysis.visit_expr(expr);
    let failed = !analysis.errors.is_empty();
    errors.extend(analysis.errors);
    (!failed).then_some(analysis.condition)
}

/// The names the expression binds itself.
#[derive(Default)]
struct Locals(HashSet<String>);

impl Visit<'_> for Locals {
    fn visit_pat_ident(&mut self, pat: &PatIdent) {
        self.0.insert(pat.ident.to_string());
        visit::visit_pat_ident(self, pat);
    }
}

struct Analysis<'r> {
    roots: &'r mut dyn Roots,
    locals: HashSet<String>,
    errors: Errors,
    condition: Condition,
}

impl Analysis<'_> {
    /// Whether `ident` is a data root, reporting lower-case names that are
    /// not one.
    fn root(&mut self, ident: &Ident) -> bool {
        let name = ident.to_string();
        if self.locals.contains(&name) || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return false;
        }
        match self.roots.accept(ident) {
            Ok(()) => true,
            Err(error) => {
                self.errors.push(error);
                false
            }
        }
    }

    /// Records the value read at `root.fields...`, once.
    fn observe(&mut self, root: &Ident, fields: &[&Member], expr: TokenStream) {
        let mut path = root.to_string();
        for member in fields {
            path.push('.');
            path.push_str(&render::member(member));
        }
        if !self.condition.observed.iter().any(|(seen, _)| *seen == path) {
            self.condition.observed.push((path, expr));
        }
    }
}

impl Visit<'_> for Analysis<'_> {
    fn visit_expr_field(&mut self, field: &ExprField) {
        let mut members = vec![&field.member];
        let mut base = &*field.base;
        while let Expr::Field(inner) = base {
            members.push(&inner.member);
            base = &inner.base;
        }
        match single_ident(base) {
            Some(root) => {
                if self.root(root) {
                    members.reverse();
                    self.observe(root, &members, quote!(#field));
                }
            }
            None => self.visit_expr(base),
        }
    }

    fn visit_expr_path(&mut self, path: &ExprPath) {
        if let Some(ident) = single_ident_path(path)
            && self.root(ident)
        {
            self.observe(ident, &[], quote!(#ident));
        }
    }

    fn visit_macro(&mut self, mac: &syn::Macro) {
        self.scan(mac.tokens.clone());
    }

    fn visit_expr_call(&mut self, call: &ExprCall) {
        if !matches!(&*call.func, Expr::Path(_)) {
            self.visit_expr(&call.func);
        }
        for arg in &call.args {
            self.visit_expr(arg);
        }
    }
}

impl Analysis<'_> {
    /// Whether a name met in a macro's tokens reads data: a data name that
    /// is not a field (`after_dot`) nor bound by the expression.
    fn scanned_root(&mut self, ident: &Ident, after_dot: bool) -> bool {
        let data_name = !after_dot && !self.locals.contains(&ident.to_string()) && self.roots.names_data(ident);
        data_name && self.root(ident)
    }

    /// Finds the data names in a macro's tokens, with the field chains
    /// after them (`extract_metadata.height`, not `.len()`).
    fn scan(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut index = 0;
        while index < tokens.len() {
            match &tokens[index] {
                TokenTree::Group(group) => self.scan(group.stream()),
                TokenTree::Ident(ident) if self.scanned_root(ident, index > 0 && is_dot(&tokens[index - 1])) => {
                    let mut fields = Vec::new();
                    while let [dot, field, rest @ ..] = &tokens[index + 1 + 2 * fields.len()..]
                        && is_dot(dot)
                        && let Some(member) = member(field)
                        && !matches!(rest.first(), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis)
                    {
                        fields.push(member);
                    }
                    index += 2 * fields.len();
                    let members: Vec<&Member> = fields.iter().collect();
                    self.observe(ident, &members, quote!(#ident #(.#fields)*));
                }
                _ => {}
            }
            index += 1;
        }
    }
}

/// Whether `token` is a lone `.` (a field access, not `..`).
fn is_dot(token: &TokenTree) -> bool {
    matches!(token, TokenTree::Punct(p) if p.as_char() == '.' && p.spacing() == Spacing::Alone)
}

/// The field a token names after a `.`.
fn member(token: &TokenTree) -> Option<Member> {
    match token {
        TokenTree::Ident(ident) => Some(Member::Named(ident.clone())),
        TokenTree::Literal(literal) => syn::parse_str::<syn::Index>(&literal.to_string()).ok().map(|index| {
            Member::Unnamed(syn::Index {
                span: literal.span(),
                ..index
            })
        }),
        _ => None,
    }
}

fn single_ident_path(path: &ExprPath) -> Option<&Ident> {
    if path.qself.is_some() {
        return None;
    }
    path.path.get_ident()
}
